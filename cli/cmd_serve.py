"""`holdfast serve`, `holdfast verify-export`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from cli.common import CommandError, load_config
from vault import keys
from vault.errors import KeyFileError


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
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
    from api.workers import serve as serve_workers
    from api.workers import uvicorn_config
    from vault.notify import notify

    url = f"{'https' if tls else 'http'}://{host}:{port}"
    if cfg.api.workers > 1:
        return serve_workers(cfg, host, port, tls, url)
    app = create_app(cfg, tls=tls)

    class Server(uvicorn.Server):
        """READY (holdfast-api.service is Type=notify) once the socket is bound, not before."""

        async def startup(self, sockets: list[Any] | None = None) -> None:
            await super().startup(sockets)
            if self.started:
                notify("READY=1", f"STATUS=serving {url}")

    server = Server(uvicorn_config(app, cfg, host, port, tls))
    server.run()
    return 0 if server.started else 3  # uvicorn's startup-failure status (e.g. port in use)


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
