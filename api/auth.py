"""Logging in: bearer tokens for scripts, an HttpOnly SameSite=Strict cookie for the page.

After LOCK_AFTER failed logins in a row the account is locked for LOCK_MINUTES (counted
atomically, so parallel guesses cannot outrun it); every login costs the same one argon2
verification and answers failures alike, so neither timing nor text tells which accounts exist.
Every failure and lockout is a structured log event.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, FastAPI, Form, HTTPException, Request, Response
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from pydantic import BaseModel, Field

from api.deps import COOKIE, Principal, principal, state
from api.errors import ERRORS
from api.pools import in_pool
from vault.index.schema import User
from vault.ops.logsetup import event
from vault.people.users import Actor, authenticate, end_session, logout_everywhere, new_session

log = logging.getLogger("holdfast.api.auth")
router = APIRouter(prefix="/api/v1/auth", tags=["auth"])


class TokenOut(BaseModel):
    access_token: str
    token_type: str = "bearer"
    expires_in: int


class MeOut(BaseModel):
    name: str
    role: str
    sites: list[str]
    views: list[str] = Field(
        default=[], description="the page's views this role may use (derived from the routes' roles)"
    )


#: Each view of the page and the route it cannot work without: the role may use the view iff
#: that route admits the role. The page's navigation comes from here, so it follows the routes.
VIEW_ROUTES: dict[str, tuple[str, str]] = {
    "footage": ("GET", "/api/v1/timeline"),
    "calls": ("GET", "/api/v1/segments"),
    "incidents": ("GET", "/api/v1/incidents"),
    "subjects": ("GET", "/api/v1/subject-requests"),
    "approvals": ("GET", "/api/v1/approvals"),
    "audit": ("GET", "/api/v1/audit/compliance"),
    "admin": ("GET", "/api/v1/users"),
}


def _roles_of(dep: Dependant) -> frozenset[str] | None:
    for d in dep.dependencies:
        roles = getattr(d.call, "roles", None)
        if roles is not None:
            return frozenset(roles)
        if (found := _roles_of(d)) is not None:
            return found
    return None


def _api_routes(routes: list[Any]) -> Iterator[APIRoute]:
    """Every APIRoute, also inside included routers (FastAPI wraps those: `original_router`)."""
    for r in routes:
        if isinstance(r, APIRoute):
            yield r
        inner = getattr(r, "original_router", None)
        if inner is not None:
            yield from _api_routes(inner.routes)


def views_for(app: FastAPI, role: str) -> list[str]:
    """The views whose route admits `role`, in the page's order (a missing route admits nobody)."""
    admits: dict[tuple[str, str], frozenset[str]] = {}
    for r in _api_routes(app.routes):
        for m in r.methods:
            admits[(m, r.path)] = _roles_of(r.dependant) or frozenset()
    return [v for v, key in VIEW_ROUTES.items() if role in admits.get(key, frozenset())]


#: One answer for every failed login: which accounts exist, are disabled or locked is not told.
LOGIN_FAILED = "wrong user name or password, or the account is locked or disabled (ask an administrator)"


def _login(request: Request, username: str, password: str) -> User:
    """Check the credentials: one argon2 verification whatever the outcome, no sleep (the
    lockout bounds guessing). The routes run in the `passwords` pool (api/pools.py): at most
    `[api] max_password_checks` at once per worker."""
    st = state(request)
    client = request.client.host if request.client else "?"
    res = authenticate(st.vault.sessions, username, password, st.vault.clock())
    if res.outcome == "ok" and res.user is not None:
        event(log, "auth.login", user=username, client=client)
        return res.user
    event(
        log,
        "auth.failed",
        logging.WARNING,
        user=username[:64],
        client=client,
        outcome=res.outcome,
        failures=res.failures,
    )
    raise HTTPException(401, LOGIN_FAILED, headers={"WWW-Authenticate": "Bearer"})


def _open_session(
    request: Request, username: str, password: str, kind: Literal["bearer", "cookie"]
) -> tuple[User, str, int]:
    """Check the credentials (_login), then open a session of `[api] session_minutes`:
    (user, token, minutes)."""
    user = _login(request, username, password)
    st = state(request)
    minutes = st.cfg.api.session_minutes
    with st.vault.sessions.begin() as s:
        tok = new_session(s, user, kind, st.vault.clock(), minutes)
    return user, tok, minutes


Username = Annotated[str, Form(max_length=64)]
Password = Annotated[str, Form(max_length=1024)]


@router.post("/token", response_model=TokenOut, responses={401: ERRORS[401]})
@in_pool("passwords")
def token(request: Request, username: Username, password: Password) -> TokenOut:
    """A bearer token for scripts (`Authorization: Bearer ...`); 401 on bad credentials."""
    _user, tok, minutes = _open_session(request, username, password, "bearer")
    return TokenOut(access_token=tok, expires_in=minutes * 60)


@router.post("/login", response_model=MeOut, responses={401: ERRORS[401]})
@in_pool("passwords")
def login(request: Request, response: Response, username: Username, password: Password) -> MeOut:
    """Log the web page in: sets an HttpOnly, SameSite=Strict session cookie (Secure under TLS)."""
    user, tok, minutes = _open_session(request, username, password, "cookie")
    st = state(request)
    response.set_cookie(
        COOKIE, tok, max_age=minutes * 60, httponly=True, samesite="strict", secure=st.tls, path="/"
    )
    return MeOut(
        name=user.name, role=user.role, sites=list(user.sites), views=views_for(request.app, user.role)
    )


@router.post("/logout", status_code=204, responses={401: ERRORS[401]})
def logout(request: Request, response: Response, who: Principal = Depends(principal)) -> Response:
    """End this session (cookie or bearer token)."""
    st = state(request)
    auth = request.headers.get("authorization", "")
    tok = auth[7:] if auth.lower().startswith("bearer ") else request.cookies.get(COOKIE, "")
    with st.vault.sessions.begin() as s:
        end_session(s, tok)
    event(log, "auth.logout", user=who.name)
    r = Response(status_code=204)
    r.delete_cookie(COOKIE, path="/")
    return r


class SessionsEnded(BaseModel):
    sessions_ended: int


@router.post("/logout-all", response_model=SessionsEnded, responses={401: ERRORS[401]})
def logout_all(request: Request, response: Response, who: Principal = Depends(principal)) -> SessionsEnded:
    """Log out everywhere: end every session and token of this account (logged)."""
    st = state(request)
    with st.vault.sessions.begin() as s:
        n = logout_everywhere(s, st.vault.access_log, Actor(who.name, who.role), who.name, st.vault.clock())
    event(log, "auth.logout_all", user=who.name, sessions=n)
    response.delete_cookie(COOKIE, path="/")
    return SessionsEnded(sessions_ended=n)


@router.get("/me", response_model=MeOut, responses={401: ERRORS[401]})
def me(request: Request, who: Principal = Depends(principal)) -> MeOut:
    """Who is logged in, with which role and sites, and which of the page's views it may use."""
    return MeOut(
        name=who.name, role=who.role, sites=sorted(who.sites), views=views_for(request.app, who.role)
    )
