"""Offline verification of an `audit export` directory: what an auditor runs, with no database.

Kept apart from vault.ledger.ledgers (which needs SQLAlchemy) so `holdfast audit verify` starts fast;
vault.ledger.streamverify does the work, this adds the two-log export layout (manifest.json, <log>-log/).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from vault.ledger import entries, streamverify, verify


def verify_export(
    directory: Path,
    pub: Ed25519PublicKey | Sequence[Ed25519PublicKey],
    progress: Callable[[str], Callable[[int], None]] | None = None,
) -> list[tuple[str, verify.VerifyReport | str]]:
    """Verify every log named in DIR/manifest.json; a str in place of a report is a fatal read error.

    An unsealed tail counts as a failure here: `audit export` always signs the head first, so
    entries no checkpoint covers were added after the export. `progress(log name)` returns a
    callback given the bytes read so far.
    """
    manifest_path = directory / "manifest.json"
    try:
        manifest = json.loads(manifest_path.read_text("utf-8"))
        logs = [(str(x["log"]), str(x["origin"])) for x in manifest["summary"]]
    except (OSError, ValueError, KeyError, TypeError) as e:
        return [("manifest", f"{manifest_path}: unreadable manifest ({e})")]
    out: list[tuple[str, verify.VerifyReport | str]] = []
    for name, origin in logs:
        try:
            rep = streamverify.verify_export_dir(
                directory / f"{name}-log",
                pub,
                origin=origin,
                progress=progress(name) if progress is not None else None,
            )
        except entries.TlogError as e:
            out.append((name, str(e)))
            continue
        out.append((name, rep))
    return out


def log_origins(directory: Path) -> dict[str, str]:
    """origin -> log name, from DIR/manifest.json (for `audit verify --since`)."""
    manifest = json.loads((directory / "manifest.json").read_text("utf-8"))
    return {str(x["origin"]): str(x["log"]) for x in manifest["summary"]}
