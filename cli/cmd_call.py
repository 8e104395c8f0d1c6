"""`holdfast call start|stop|optout|pause|resume|status|hash-key`: call control for a running line recorder."""

from __future__ import annotations

import argparse
from pathlib import Path

from cli.common import CommandError, load_config, print_json


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    g = sub.add_parser("call", help="tell a running call recorder that a call starts, stops or opts out")
    gs = g.add_subparsers(dest="call_cmd", metavar="ACTION", required=True)

    def line_arg(p: argparse.ArgumentParser) -> None:
        p.add_argument("--line", required=True, help="call-line id from the config")
        p.add_argument("--socket", type=Path, help="recorder control socket (default from config)")

    s = gs.add_parser("start", help="a call began on LINE: start recording it")
    line_arg(s)
    s.add_argument("--agent", required=True, help="name of the employee who answered or called")
    s.add_argument("--direction", required=True, choices=["in", "out"])
    s.add_argument("--remote", required=True, help="the other party's number (hashed if the line says so)")
    s.add_argument("--call-id", help="the PBX's call id (default: a new random id)")
    s.set_defaults(func=control, endpoint="/calls/start")
    for action, endpoint, help_ in (
        ("stop", "/calls/stop", "the call on LINE ended: close its recording"),
        ("optout", "/calls/optout", "the caller declined recording: discard this call's audio"),
        (
            "pause",
            "/calls/pause",
            "stop keeping the call's audio (card numbers, health details) until resume",
        ),
        ("resume", "/calls/resume", "keep the call's audio again after a pause"),
        ("status", "/status", "is a call being recorded on LINE?"),
    ):
        c = gs.add_parser(action, help=help_)
        line_arg(c)
        c.set_defaults(func=control, endpoint=endpoint)

    h = gs.add_parser("hash-key", help="create the remote-party hash key, or hash a number for searching")
    h.add_argument("--init", action="store_true", help="create keys/remote-hash.key (once)")
    h.add_argument("--remote", help="print the stored hash of this number (to search by remote party)")
    h.set_defaults(func=hash_key)


def control(args: argparse.Namespace) -> int:
    from recorder.callcontrol import call_line, control_request, control_socket_path

    cfg = load_config(args)
    try:
        call_line(cfg, args.line)
    except Exception as e:
        raise CommandError(str(e)) from None
    path = args.socket or control_socket_path(cfg, args.line)
    body = None
    method = "GET" if args.endpoint == "/status" else "POST"
    if args.endpoint == "/calls/start":
        body = {"agent": args.agent, "direction": args.direction, "remote": args.remote}
        if args.call_id:
            body["call_id"] = args.call_id
    elif method == "POST":
        body = {}
    status, out = control_request(path, method, args.endpoint, body)
    if status != 200:
        raise CommandError(f"line {args.line}: {out.get('error', out)}")
    print_json(out)
    return 0


def hash_key(args: argparse.Namespace) -> int:
    from vault.media.callmeta import hash_remote, init_remote_hash_key, load_remote_hash_key

    cfg = load_config(args)
    if not args.init and args.remote is None:
        raise CommandError("give --init and/or --remote NUMBER")
    if args.init:
        print(init_remote_hash_key(cfg.keys.dir))
    if args.remote is not None:
        print(hash_remote(load_remote_hash_key(cfg.keys.dir), args.remote))
    return 0
