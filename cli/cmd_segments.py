"""`holdfast seal`, `holdfast segments list|show|cat`, `holdfast ingest`."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from datetime import timedelta
from pathlib import Path

from cli.common import CommandError, load_config, open_vault, print_json
from vault.index import find_segments, segment_dict
from vault.ingest import Ingestor
from vault.media import MediaError, probe
from vault.spool import SpoolSegment
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

    g = sub.add_parser("segments", help="list, show and read indexed segments")
    gs = g.add_subparsers(dest="segments_cmd", metavar="ACTION", required=True)
    ls = gs.add_parser("list", help="segments of a source overlapping a time range")
    ls.add_argument("--source", help="camera or call-line id (default: all)")
    ls.add_argument("--from", dest="frm", help="ISO 8601 start of the range")
    ls.add_argument("--to", help="ISO 8601 end of the range")
    ls.add_argument("--limit", type=int, default=None)
    ls.add_argument("--agent", help="calls answered or made by this agent (meta.agent)")
    ls.add_argument("--direction", choices=["in", "out"], help="calls in this direction (meta.direction)")
    ls.add_argument("--call-id", help="all parts of one call (meta.call_id)")
    ls.add_argument(
        "--json",
        action="store_true",
        help="a JSON array (id, source, kind, start, end, deadline, meta)",
    )
    ls.set_defaults(func=list_cmd)
    sh = gs.add_parser("show", help="everything known about one segment, as JSON")
    sh.add_argument("id")
    sh.add_argument("--json", action="store_true", help="JSON (the only format; accepted for scripts)")
    sh.set_defaults(func=show_cmd)
    c = gs.add_parser("cat", help="write a segment's decrypted bytes to stdout")
    c.add_argument("id")
    c.set_defaults(func=cat_cmd)

    i = sub.add_parser("ingest", help="verify, index and store what recorders put in the spool (daemon)")
    i.add_argument("--once", action="store_true", help="drain the spool and exit")
    i.set_defaults(func=ingest_cmd)


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


def _range(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    try:
        frm = parse_iso(args.frm, "--from") if args.frm else None
        to = parse_iso(args.to, "--to") if args.to else None
    except ValueError as e:
        raise CommandError(str(e)) from None
    return frm, to


def list_cmd(args: argparse.Namespace) -> int:
    frm, to = _range(args)
    with open_vault(args) as v, v.sessions() as s:
        meta = {
            k: v
            for k, v in (("agent", args.agent), ("direction", args.direction), ("call_id", args.call_id))
            if v is not None
        }
        segs = find_segments(s, args.source, frm, to, args.limit, meta=meta)
        rows = [segment_dict(x) for x in segs]
    if args.json:
        print_json(rows)
        return 0
    print(f"{'ID':32}  {'SOURCE':12} {'START':24} {'END':24} {'DEADLINE':24}")
    for r in rows:
        flag = "  cut-short" if r["cut_short"] else ""
        print(f"{r['id']:32}  {r['source']:12} {r['start']:24} {r['end']:24} {r['deadline']:24}{flag}")
    return 0


def show_cmd(args: argparse.Namespace) -> int:
    with open_vault(args) as v, v.sessions() as s:
        print_json(segment_dict(v.get_segment(s, args.id), full=True))
    return 0


def cat_cmd(args: argparse.Namespace) -> int:
    with open_vault(args) as v, v.sessions() as s:
        seg = v.get_segment(s, args.id)
        out = sys.stdout.buffer
        for piece in v.read_plaintext(seg):
            out.write(piece)
        out.flush()
    return 0


def ingest_cmd(args: argparse.Namespace) -> int:
    with open_vault(args) as v:
        ing = Ingestor(v)
        if args.once:
            st = ing.scan()
            print(
                f"indexed={st.indexed} duplicates={st.duplicates} gaps={st.gaps} rejected={st.rejected} "
                f"deferred={st.deferred} erasures={st.erasures}"
            )
            return 0
        stop = threading.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
        from vault.notify import notify

        ing.run(stop, on_ready=lambda: notify("READY=1", f"STATUS=watching {v.cfg.paths.spool}"))
        notify("STOPPING=1")
    return 0
