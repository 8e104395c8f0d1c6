"""Logging in: bearer tokens for scripts, an HttpOnly SameSite=Strict cookie for the page.

Failed logins are slowed (a growing delay) and, after LOCK_AFTER in a row, the account is
locked for LOCK_MINUTES; every failure and lockout is a structured log event.
"""

from __future__ import annotations

import logging
import time
from typing import Annotated

from fastapi import APIRouter, Depends, Form, HTTPException, Request, Response
from pydantic import BaseModel

from api.deps import COOKIE, Principal, principal, state
from api.errors import ERRORS
from vault.log import event
from vault.users import User, authenticate, end_session, new_session

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


def _login(request: Request, username: str, password: str) -> User:
    st = state(request)
    client = request.client.host if request.client else "?"
    with st.vault.sessions.begin() as s:
        res = authenticate(s, username, password, st.vault.clock())
        if res.user is not None:
            s.expunge(res.user)
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
    # Slow down guessing: a delay that grows with consecutive failures (capped).
    time.sleep(min(0.2 * res.failures, 2.0))
    if res.outcome == "locked":
        raise HTTPException(
            401, "account locked after repeated failed logins; try again later or ask an administrator"
        )
    raise HTTPException(401, "wrong user name or password", headers={"WWW-Authenticate": "Bearer"})


@router.post("/token", response_model=TokenOut, responses={401: ERRORS[401]})
def token(
    request: Request,
    username: Annotated[str, Form(max_length=64)],
    password: Annotated[str, Form(max_length=1024)],
) -> TokenOut:
    """A bearer token for scripts (`Authorization: Bearer ...`); 401 on bad credentials."""
    user = _login(request, username, password)
    st = state(request)
    minutes = st.cfg.api.session_minutes
    with st.vault.sessions.begin() as s:
        tok = new_session(s, user, "bearer", st.vault.clock(), minutes)
    return TokenOut(access_token=tok, expires_in=minutes * 60)


@router.post("/login", response_model=MeOut, responses={401: ERRORS[401]})
def login(
    request: Request,
    response: Response,
    username: Annotated[str, Form(max_length=64)],
    password: Annotated[str, Form(max_length=1024)],
) -> MeOut:
    """Log the web page in: sets an HttpOnly, SameSite=Strict session cookie (Secure under TLS)."""
    user = _login(request, username, password)
    st = state(request)
    minutes = st.cfg.api.session_minutes
    with st.vault.sessions.begin() as s:
        tok = new_session(s, user, "cookie", st.vault.clock(), minutes)
    response.set_cookie(
        COOKIE, tok, max_age=minutes * 60, httponly=True, samesite="strict", secure=st.tls, path="/"
    )
    return MeOut(name=user.name, role=user.role, sites=list(user.sites))


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


@router.get("/me", response_model=MeOut, responses={401: ERRORS[401]})
def me(who: Principal = Depends(principal)) -> MeOut:
    """Who is logged in, with which role and sites."""
    return MeOut(name=who.name, role=who.role, sites=sorted(who.sites))
