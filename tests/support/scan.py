"""Invariant 1 in tests: no file under the spool or the store holds plaintext media.

Two checks, written apart on purpose. The product's structural scanner (`vault.sealed.scan`, what
`holdfast check` runs; tests/test_scan.py shows it catches real ffmpeg output of every format
and stays quiet on 64 MB of random bytes) finds media anywhere in a file. `starts_like_media`
is a second, much simpler opinion that does not share its code: it looks only at how a file
begins, where a whole media file written to disk (the usual leak: ffmpeg given a path instead
of a pipe) shows its container's signature. A sealed segment begins with its own header, so
this check never fires on one, and a regression in the scanner still fails the tests.
"""

from __future__ import annotations

import os
from pathlib import Path

from vault.sealed.scan import find_plaintext

#: (offset, bytes) a container has at that offset from the start of the file.
_LEADING: dict[str, tuple[tuple[int, bytes], ...]] = {
    "mp4": ((4, b"ftyp"),),
    "mp4 fragment": ((4, b"moof"),),
    "mp4 segment": ((4, b"styp"),),
    "ogg": ((0, b"OggS"),),
    "wav": ((0, b"RIFF"), (8, b"WAVE")),
    "id3": ((0, b"ID3"),),
    "flac": ((0, b"fLaC"),),
    "ebml": ((0, b"\x1a\x45\xdf\xa3"),),
}


def starts_like_media(head: bytes) -> str | None:
    """The container whose signature ``head`` (a file's first bytes) begins with, or None."""
    for name, marks in _LEADING.items():
        if all(head[at : at + len(mark)] == mark for at, mark in marks):
            return name
    return None


def plaintext_media_files(*roots: Path) -> list[tuple[Path, int, str]]:
    """(file, offset, format) for every file under `roots` holding plaintext media.

    `rejected/*.reason.txt` files are text written by ingest and skipped.
    """
    hits: list[tuple[Path, int, str]] = []
    for root in roots:
        if not root.exists():
            continue
        for dirpath, _dirs, files in os.walk(root):
            for name in sorted(files):
                if name.endswith(".reason.txt"):
                    continue
                p = Path(dirpath) / name
                try:
                    data = p.read_bytes()
                except FileNotFoundError:
                    continue  # moved by ingest while we walked
                found = find_plaintext(data)
                leading = starts_like_media(data[:16])
                if found is not None:
                    hits.append((p, *found))
                elif leading is not None:
                    hits.append((p, 0, leading))
    return hits
