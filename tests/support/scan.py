"""Scans for plaintext media on disk: invariant 1 as a test helper."""

from __future__ import annotations

import os
from pathlib import Path

#: Box types and magic numbers that only appear in the clear in media files.
SIGNATURES = (
    b"ftyp",
    b"moov",
    b"moof",
    b"mdat",
    b"OggS",
    b"RIFF",
    b"WAVE",
    b"ID3",
    b"fLaC",
    b"OpusHead",
    b"\x1aE\xdf\xa3",
)


def plaintext_media_files(*roots: Path) -> list[tuple[Path, bytes]]:
    """Files under `roots` that contain any media signature (rejected/ reason texts excluded)."""
    hits: list[tuple[Path, bytes]] = []
    for root in roots:
        if not root.exists():
            continue
        for dirpath, _dirs, files in os.walk(root):
            for name in files:
                if name.endswith(".reason.txt"):
                    continue
                p = Path(dirpath) / name
                try:
                    data = p.read_bytes()
                except FileNotFoundError:
                    continue  # moved by ingest while we walked
                for sig in SIGNATURES:
                    if sig in data:
                        hits.append((p, sig))
                        break
    return hits
