"""`holdfast users add|list`, `holdfast serve`, `holdfast verify-export`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cli.common import CommandError, load_config, print_json
from vault import keys
from vault.errors import KeyFileError
from vault.users import ROLES, User, UserError, add_user
from vault.vault import Vault


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    u = sub.add_parser("users", help="accounts for the web page and API")
    us = u.add_subparsers(dest="users_cmd", metavar="ACTION", required=True)
    a = us.add_parser("add", help="create an account (password read from stdin)")
    a.add_argument("name")
    a.add_argument("--role", required=True, choices=ROLES)
    a.add_argument("--site", action="append", default=[], help="site id (security role; repeatable)")
    a.add_argument(
        "--password-stdin", action="store_true", required=True, help="read the password from stdin"
    )
    a.set_defaults(func=users_add)
    ls = us.add_parser("list", help="accounts as JSON (no hashes)")
    ls.set_defaults(func=users_list)

    s = sub.add_parser("serve", help="the HTTP API and web page (uvicorn)")
    s.add_argument("--host", help="bind address (default: api.host, 127.0.0.1)")
    s.add_argument("--port", type=int, help="port (default: api.port)")
    s.set_defaults(func=serve)

    v = sub.add_parser("verify-export", help="verify an evidence export zip offline with the public key")
    v.add_argument("file", type=Path, metavar="FILE.zip")
    v.add_argument(
        "--pubkey", type=Path, required=True, metavar="KEY", help="the vault's sign.pub (Ed25519 PEM)"
    )
    v.set_defaults(func=verify_export)


def users_add(args: argparse.Namespace) -> int:
    cfg = load_config(args)
    known = {s.id for s in cfg.sites}
    for site in args.site:
        if site not in known:
            raise CommandError(f"unknown site {site!r} (configured: {', '.join(sorted(known))})")
    password = sys.stdin.readline().rstrip("\r\n")
    with Vault(cfg) as v:
        v.migrate()
        try:
            with v.sessions.begin() as s:
                add_user(s, args.name, args.role, args.site, password, v.clock())
        except UserError as e:
            raise CommandError(str(e)) from None
    print(
        f"user {args.name} added with role {args.role}"
        + (f" for sites {', '.join(args.site)}" if args.site else "")
    )
    return 0


def users_list(args: argparse.Namespace) -> int:
    from sqlalchemy import select

    with Vault(load_config(args)) as v, v.sessions() as s:
        print_json(
            [
                {"name": u.name, "role": u.role, "sites": u.sites, "disabled": u.disabled}
                for u in s.scalars(select(User))
            ]
        )
    return 0


def serve(args: argparse.Namespace) -> int:
    import uvicorn

    from api.app import create_app

    cfg = load_config(args)
    host = args.host or cfg.api.host
    port = args.port or cfg.api.port
    tls = cfg.api.tls_cert is not None
    if not tls and host not in ("127.0.0.1", "::1", "localhost"):
        raise CommandError(
            f"refusing to serve plain HTTP on {host}: set api.tls_cert and api.tls_key to bind beyond loopback"
        )
    app = create_app(cfg, tls=tls)
    uvicorn.run(
        app,
        host=host,
        port=port,
        log_config=None,
        access_log=False,
        # X-Forwarded-For is api.guard's business ([api] trusted_proxies); uvicorn's own handling
        # would believe any loopback peer.
        proxy_headers=False,
        ssl_certfile=str(cfg.api.tls_cert) if tls else None,
        ssl_keyfile=str(cfg.api.tls_key) if tls else None,
    )
    return 0


def verify_export(args: argparse.Namespace) -> int:
    from vault.evidence import ExportInvalid
    from vault.evidence import verify_export as verify

    try:
        pub = keys.load_sign_public(args.pubkey)
    except KeyFileError as e:
        raise CommandError(str(e)) from None
    try:
        m = verify(args.file, pub)
    except ExportInvalid as e:
        print(f"holdfast: export INVALID: {e}", file=sys.stderr)
        return 1
    if "subject_request" in m:  # vault.subject_export: redacted video and call audio
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
