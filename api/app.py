"""The FastAPI app: everything under /api/v1, the web page from api/static, /healthz.

`create_app(cfg)` is what `holdfast serve` runs under uvicorn and what tests drive directly.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, HTTPException, Request, Security
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse, Response
from fastapi.security import HTTPAuthorizationCredentials
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from api import accesslog, admin, approvals, audit, auth, footage, hls, incidents, media, subjects
from api.deps import bearer_scheme, cookie_scheme, principal
from api.guard import Guard
from api.pools import open_pools
from api.state import AppState
from config.model import HoldfastConfig
from vault.errors import HoldfastError
from vault.ops.logsetup import event
from vault.ops.metrics import CONTENT_TYPE, exposition
from vault.sealed.seal import KeyDestroyed, SealError
from vault.vault import Vault

log = logging.getLogger("holdfast.api")
STATIC = Path(__file__).with_name("static")


def _is_loopback(host: str | None) -> bool:
    """127.0.0.0/8 or ::1. A reverse proxy on the box makes every client look local unless it is in
    `[api] trusted_proxies` (then its X-Forwarded-For names the client): see docs/appliance.md, "Metrics"."""
    try:
        return host is not None and ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def create_app(cfg: HoldfastConfig, vault: Vault | None = None, tls: bool = False) -> FastAPI:
    v = vault or Vault(cfg)
    v.migrate()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.holdfast.pools = open_pools(cfg)
        yield

    app = FastAPI(
        lifespan=lifespan,
        title="Holdfast",
        version="1",
        description="Find, play and export footage for an incident; audit views. Every access is logged.",
        docs_url="/api/docs",
        redoc_url=None,
        openapi_url="/api/v1/openapi.json",
        # Holdfast exports no OpenTelemetry (its metrics are /metrics, its logs structured events);
        # left on, FastAPI would look up tracer, meter and logger providers on every request.
        telemetry={"tracing": False, "metrics": False, "logs": False, "operation_spans": False},
    )
    st = AppState(vault=v, tls=tls)
    app.state.holdfast = st

    async def refused(request: Request, status: int, detail: str) -> None:
        await run_in_threadpool(accesslog.record_outcome, request, status, detail)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        msgs = []
        for e in exc.errors():
            where = ".".join(str(x) for x in e.get("loc", ()) if x != "body")
            msgs.append(f"{where}: {e.get('msg')}")
        return JSONResponse({"detail": "; ".join(msgs) or "invalid request"}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = exc.detail
        if exc.status_code == 404 and detail == "Not Found":
            detail = f"no such route: {request.url.path[:200]} (see /api/v1/openapi.json)"
        elif exc.status_code == 405 and detail == "Method Not Allowed":
            detail = f"method {request.method} not allowed on {request.url.path[:200]}"
        await refused(request, exc.status_code, str(detail))
        return JSONResponse(
            {"detail": detail}, status_code=exc.status_code, headers=getattr(exc, "headers", None)
        )

    @app.exception_handler(KeyDestroyed)
    async def _shredded(request: Request, exc: KeyDestroyed) -> JSONResponse:
        await refused(request, 410, str(exc))
        return JSONResponse({"detail": f"footage no longer exists: {exc}"}, status_code=410)

    @app.exception_handler(SealError)
    async def _damaged(request: Request, exc: SealError) -> JSONResponse:
        event(
            log,
            "api.segment_damaged",
            logging.ERROR,
            error=f"{type(exc).__name__}: {exc}",
            path=request.url.path[:200],
        )
        await refused(request, 500, f"{type(exc).__name__}: {exc}")
        return JSONResponse(
            {"detail": f"stored segment failed authentication ({type(exc).__name__}): {exc}"}, status_code=500
        )

    @app.exception_handler(HoldfastError)
    async def _holdfast(request: Request, exc: HoldfastError) -> JSONResponse:
        await refused(request, 400, f"{type(exc).__name__}: {exc}")
        return JSONResponse({"detail": f"{type(exc).__name__}: {exc}"}, status_code=400)

    @app.get("/healthz", tags=["health"], responses={200: {"content": {"application/json": {}}}})
    def healthz() -> dict[str, Any]:
        """Liveness for load balancers and systemd: no auth, no data."""
        return {"status": "ok"}

    @app.get(
        "/metrics",
        tags=["health"],
        responses={
            200: {"content": {CONTENT_TYPE: {}}},
            401: {"description": "an off-box client that is not logged in"},
            403: {"description": "an off-box client that is not an admin"},
        },
    )
    def metrics(
        request: Request,
        bearer: HTTPAuthorizationCredentials | None = Security(bearer_scheme),
        cookie: str | None = Security(cookie_scheme),
    ) -> Response:
        """Prometheus metrics (`holdfast_*`): counts, ages and bytes from the index, never footage,
        names of people or call numbers. Loopback clients (a Prometheus or node exporter on the box)
        need no login; any other client needs an admin's bearer token (Prometheus
        `authorization: {credentials: ...}`), because camera ids and activity are still site facts."""
        if not _is_loopback(request.client.host if request.client else None):
            who = principal(request, bearer, cookie)
            if who.role != "admin":
                raise HTTPException(
                    403, f"role {who.role!r} may not read /metrics from off the box (allowed: admin)"
                )
        return Response(exposition(v), media_type=CONTENT_TYPE)

    routers = (auth, footage, media, hls, incidents, subjects, audit, admin, approvals)
    for r in routers:
        app.include_router(r.router)

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    @app.get("/favicon.ico", include_in_schema=False)
    def favicon() -> RedirectResponse:
        return RedirectResponse("/static/favicon.svg")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        event(
            log,
            "api.error",
            logging.ERROR,
            error=f"{type(exc).__name__}: {exc}"[:300],
            path=request.url.path[:200],
        )
        await refused(request, 500, f"{type(exc).__name__}")
        return JSONResponse(
            {"detail": f"internal error ({type(exc).__name__}); see the server log"}, status_code=500
        )

    app.add_middleware(
        Guard, trusted_proxies=list(cfg.api.trusted_proxies), tls=tls, worker=cfg.api.workers > 1
    )
    return app
