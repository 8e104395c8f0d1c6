"""`holdfast serve`: the HTTP API and web page under uvicorn."""

from __future__ import annotations

import argparse

from cli.common import CommandError, load_config


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    s = sub.add_parser("serve", help="the HTTP API and web page (uvicorn)")
    s.add_argument("--host", help="bind address (default: api.host, 127.0.0.1)")
    s.add_argument("--port", type=int, help="port (default: api.port)")
    s.set_defaults(func=serve)


def serve(args: argparse.Namespace) -> int:
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
    from api.workers import uvicorn_server
    from vault.ops.notify import notify

    url = f"{'https' if tls else 'http'}://{host}:{port}"
    if cfg.api.workers > 1:
        return serve_workers(cfg, host, port, tls, url)
    app = create_app(cfg, tls=tls)

    # READY (holdfast-api.service is Type=notify) once the socket is bound, not before.
    server = uvicorn_server(
        app, cfg, host, port, tls, lambda _srv: notify("READY=1", f"STATUS=serving {url}")
    )
    server.run()
    return 0 if server.started else 3  # uvicorn's startup-failure status (e.g. port in use)
