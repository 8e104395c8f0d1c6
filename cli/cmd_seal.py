"""`holdfast seal`: a media file into the spool as a sealed segment (imports, history, tests)."""

from __future__ import annotations

import argparse
from datetime import timedelta
from pathlib import Path

from cli.common import CommandError, load_config
from vault.media.tools import MediaError, probe
from vault.store.spool import SpoolSegment
from vault.timeutil import iso, parse_iso
from vault.vault import Vault


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    s = sub.add_parser("seal", help="seal a media file into the spool (imports and tests)")
    s.add_argument("--source", required=True, help="camera or call-line id from the config")
    s.add_argument(
        "--start",
        required=True,
        help="wall-clock start, ISO 8601 with offset (e.g. 2026-11-21T08:00:00Z)",
    )
    s.add_argument("--duration", type=float, help="seconds (default: read with ffprobe)")
    s.add_argument(
        "--meta",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra metadata, repeatable",
    )
    s.add_argument("file", type=Path, metavar="FILE")
    s.set_defaults(func=seal_cmd)


def seal_cmd(args: argparse.Namespace) -> int:
    cfg = load_config(args)
    try:
        src = cfg.source(args.source)
    except KeyError as e:
        raise CommandError(str(e.args[0])) from None
    try:
        start = parse_iso(args.start, "--start")
    except ValueError as e:
        raise CommandError(str(e)) from None
    if not args.file.is_file():
        raise CommandError(f"{args.file}: no such file")
    duration = args.duration
    info: dict[str, object] = {}
    try:
        info = probe(args.file)
    except MediaError as e:
        if duration is None:
            raise CommandError(f"{e}; pass --duration to seal it anyway") from None
    if duration is None:
        duration = float(info.get("duration") or 0.0)
    meta: dict[str, object] = {
        "source": src.id,
        "site": src.site,
        "kind": info.get("kind")
        if info.get("kind") in ("video", "audio")
        else ("video" if cfg.source_kind(src.id) == "camera" else "audio"),
        "start": iso(start),
        "imported_from": args.file.name,
    }
    for k in ("video_codec", "audio_codec", "width", "height", "format"):
        if info.get(k) is not None:
            meta[k] = info[k]
    for kv in args.meta:
        k, sep, v = kv.partition("=")
        if not sep or not k:
            raise CommandError(f"--meta {kv!r}: expected KEY=VALUE")
        meta[k] = v
    with Vault(cfg) as v:
        seg = SpoolSegment(cfg.paths.spool, v.seal_public, meta)
        try:
            with open(args.file, "rb") as f:
                while chunk := f.read(1 << 20):
                    seg.write(chunk)
        except BaseException:
            seg.abort()
            raise
        end = start + timedelta(seconds=duration)
        path, summary = seg.close({"end": iso(end), "duration": duration, "end_reason": "import"})
    print(path)
    return 0
