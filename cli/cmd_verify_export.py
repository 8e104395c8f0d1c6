"""`holdfast verify-export`: check an evidence or subject-request export offline with the public key."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cli.common import CommandError
from vault.errors import KeyFileError
from vault.sealed import keys


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    v = sub.add_parser("verify-export", help="verify an evidence export zip offline with the public key")
    v.add_argument("file", type=Path, metavar="FILE.zip")
    v.add_argument(
        "--pubkey", type=Path, required=True, metavar="KEY", help="the vault's sign.pub (Ed25519 PEM)"
    )
    v.set_defaults(func=verify_export)


def verify_export(args: argparse.Namespace) -> int:
    from vault.exports.evidence import ExportInvalid
    from vault.exports.evidence import verify_export as verify

    try:
        pub = keys.load_sign_public(args.pubkey)
    except KeyFileError as e:
        raise CommandError(str(e)) from None
    try:
        m = verify(args.file, pub)
    except ExportInvalid as e:
        print(f"holdfast: export INVALID: {e}", file=sys.stderr)
        return 1
    if "subject_request" in m:  # vault.exports.subject_export: redacted video and call audio
        srcs = ", ".join(
            f"{x['source']} ({len(x['segments'])} segments, redaction {x.get('redaction', {}).get('mode', 'none') if isinstance(x.get('redaction'), dict) else 'none'})"
            for x in m.get("sources", [])
        )
        print(
            f"export OK: subject request {m['subject_request'].get('id')}, {len(m.get('files', {}))} files, sources: {srcs}"
        )
        return 0
    cams = ", ".join(
        f"{c['camera']} ({len(c['segments'])} segments, {len(c['gaps'])} gaps)" for c in m.get("cameras", [])
    )
    print(
        f"export OK: incident {m.get('incident', {}).get('id')}, {len(m.get('files', {}))} files, cameras: {cams}"
    )
    return 0
