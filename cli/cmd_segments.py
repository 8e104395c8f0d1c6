"""`holdfast segments list|show|cat`: indexed segments, for operators and scripts."""

from __future__ import annotations

import argparse
import sys

from cli.common import CommandError, open_vault, print_json
from vault.index.queries import find_segments, segment_dict
from vault.timeutil import parse_iso


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
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
