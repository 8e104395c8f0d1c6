"""What every request passes before any route reads it: body limits, proxies, cross-site checks,
and the headers every response carries.

A plain ASGI middleware (not Starlette's BaseHTTPMiddleware), so footage streams through it
untouched and the checks cost one dict lookup per request:

* **Body size** per route, enforced before the body is read: a declared `Content-Length` over the
  limit is answered 413 at once; a chunked body is counted as it arrives and cut off at the limit.
  An anonymous 200 MiB body never reaches memory, let alone the 401.
* **X-Forwarded-For** replaces the peer address only when the peer is one of
  `[api] trusted_proxies` (default: none), taking the nearest address no trusted proxy added.
* **Cross-site requests**: a state-changing request authenticated by the session cookie, and the
  cookie login itself (login CSRF), must carry an `Origin` naming this server's host, or, without
  `Origin`, `Sec-Fetch-Site: same-origin`; otherwise 403. Bearer-token requests are not
  cross-site forgeable (a browser never adds the header by itself) and are not checked.
* **Headers**: `X-Content-Type-Options: nosniff`, frame, referrer and content-security policies
  on every response; `Cache-Control: no-store` on everything but the static page assets (API
  answers carry names, sites, call parties and footage); HSTS when serving TLS.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import os
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from fastapi import HTTPException

from vault.ops.logsetup import event

log = logging.getLogger("holdfast.api.guard")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: Bodies the API accepts, in bytes. Every route takes a small JSON document or login form.
DEFAULT_BODY_LIMIT = 64 * 1024
BODY_LIMITS = {"/api/v1/auth/token": 8 * 1024, "/api/v1/auth/login": 8 * 1024}
COOKIE = "holdfast_session"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
CSP = (
    "default-src 'self'; img-src 'self' blob: data:; media-src 'self' blob:; style-src 'self'; "
    "script-src 'self'; frame-ancestors 'none'"
)


def body_limit(path: str) -> int:
    return BODY_LIMITS.get(path, DEFAULT_BODY_LIMIT)


class BodyTooLarge(HTTPException):
    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body too large: at most {limit} bytes on this route")


def _networks(items: list[str]) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    return [ipaddress.ip_network(x, strict=False) for x in items]


def _in(host: str | None, nets: list[ipaddress.IPv4Network | ipaddress.IPv6Network]) -> bool:
    if not host or not nets:
        return False
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False
    return any(ip in n for n in nets)


def forwarded_client(peer: str | None, header: str, nets: list[Any]) -> str | None:
    """The client address a chain of trusted proxies reports, or None to keep the peer's.

    Walks X-Forwarded-For from the right (the entry our proxy added) past trusted proxies; the
    first other address is the client. Entries left of it were written by the client: ignored.
    """
    if not _in(peer, nets):
        return None
    hops = [x.strip() for x in header.split(",")][-32:]
    for hop in reversed(hops):
        try:
            ipaddress.ip_address(hop)
        except ValueError:
            return None
        if not _in(hop, nets):
            return hop
    return None


def _header(scope: Scope, name: bytes) -> str | None:
    for k, v in scope.get("headers", ()):
        if k == name:
            return str(v.decode("latin-1"))
    return None


def _same_host(origin: str, scope: Scope) -> bool:
    """`Origin` names this server: its host[:port] is the request's `Host`. The scheme is not
    compared, so a TLS-terminating proxy in front still matches (it must pass `Host` through)."""
    host = _header(scope, b"host")
    scheme, sep, netloc = origin.partition("://")
    return bool(host) and sep == "://" and scheme in ("http", "https") and netloc.lower() == str(host).lower()


def cross_site_refusal(scope: Scope) -> str | None:
    """Why a state-changing cookie request (or the cookie login) looks forged; None if it is fine."""
    if scope.get("method", "GET") in SAFE_METHODS:
        return None
    path = scope.get("path", "")
    cookie = _header(scope, b"cookie") or ""
    by_cookie = f"{COOKIE}=" in cookie and _header(scope, b"authorization") is None
    if not (by_cookie or path == "/api/v1/auth/login"):
        return None
    origin = _header(scope, b"origin")
    if origin is not None:
        if _same_host(origin, scope):
            return None
        return f"Origin {origin[:100]!r} is not this site"
    site = _header(scope, b"sec-fetch-site")
    if site == "same-origin":
        return None
    if site is not None:
        return f"Sec-Fetch-Site is {site[:40]!r}"
    return "neither Origin nor Sec-Fetch-Site says it comes from this site's own page"


class Guard:
    def __init__(self, app: ASGIApp, trusted_proxies: list[str], tls: bool, worker: bool = False) -> None:
        self.app = app
        self.nets = _networks(trusted_proxies)
        self.tls = tls
        #: Built in the worker process (api.workers forks before create_app), so this is its pid.
        self.worker = str(os.getpid()).encode() if worker else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope.get("path", "")
        if self.nets:
            xff = _header(scope, b"x-forwarded-for")
            client = scope.get("client")
            if xff is not None and client:
                real = forwarded_client(client[0], xff, self.nets)
                if real is not None:
                    scope["client"] = (real, 0)
        send = self._with_headers(send, path)

        why = cross_site_refusal(scope)
        if why is not None:
            event(log, "api.cross_site_refused", logging.WARNING, path=path[:200], why=why)
            await _json(
                send,
                403,
                f"cross-site request refused ({why}): state-changing requests with the session "
                "cookie must come from the Holdfast page itself",
            )
            return

        limit = body_limit(path)
        declared = _header(scope, b"content-length")
        if declared is not None:
            try:
                n = int(declared) if len(declared) <= 19 else limit + 1
            except ValueError:
                await _json(send, 400, "malformed Content-Length header")
                return
            if n > limit:
                await _json(send, 413, f"request body too large: at most {limit} bytes on this route")
                return
        await self.app(scope, _counting(receive, limit), send)

    def _with_headers(self, send: Send, path: str) -> Send:
        extra = [
            (b"x-content-type-options", b"nosniff"),
            (b"x-frame-options", b"DENY"),
            (b"referrer-policy", b"no-referrer"),
            (b"content-security-policy", CSP.encode()),
        ]
        if self.tls:
            extra.append((b"strict-transport-security", b"max-age=31536000"))
        if self.worker is not None:
            extra.append((b"x-holdfast-worker", self.worker))
        if not path.startswith("/static/"):
            extra.append((b"cache-control", b"no-store"))

        async def wrapped(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", ()))
                have = {k.lower() for k, _ in headers}
                headers += [(k, v) for k, v in extra if k not in have]
                message["headers"] = headers
            await send(message)

        return wrapped


def _counting(receive: Receive, limit: int) -> Receive:
    seen = 0

    async def wrapped() -> Message:
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > limit:
                raise BodyTooLarge(limit)
        return message

    return wrapped


async def _json(send: Send, status: int, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})
