"""Administrator: users and health. No footage (separation of duties).

Every account change is an access-log entry naming the acting admin (vault.people.users), and reaches
live sessions on their next request: each request re-reads the account behind its token.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request, Response
from fastapi import Path as PathParam
from pydantic import BaseModel, Field
from sqlalchemy import select

from api.deps import Principal, require, state
from api.errors import ERRORS
from api.pools import in_pool
from vault.index.queries import index_summary
from vault.index.schema import User
from vault.people import users
from vault.people.users import NAME_RE, ROLES, Actor, UnknownUser, UserError, add_user
from vault.timeutil import iso

router = APIRouter(prefix="/api/v1", tags=["admin"])


class UserOut(BaseModel):
    name: str
    role: str
    sites: list[str]
    disabled: bool
    locked: bool
    failed_logins: int
    created_at: str


RoleName = Annotated[str, Field(pattern="^(" + "|".join(ROLES) + ")$")]
SiteList = list[Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")]]
UserName = Annotated[str, PathParam(pattern=NAME_RE.pattern)]


class UserIn(BaseModel):
    name: str = Field(pattern=NAME_RE.pattern)
    role: RoleName
    sites: SiteList = Field(default=[], max_length=100)
    password: str = Field(min_length=10, max_length=1024)


class RoleIn(BaseModel):
    role: RoleName
    sites: SiteList = Field(default=[], max_length=100)


class SitesIn(BaseModel):
    sites: SiteList = Field(min_length=1, max_length=100)


class SessionsEnded(BaseModel):
    sessions_ended: int


class HealthOut(BaseModel):
    segments: int
    store_used_bytes: int
    store_total_bytes: int
    spool_backlog: int
    oldest_segment: str | None
    newest_segment: str | None


def _user_out(u: User, now) -> UserOut:  # type: ignore[no-untyped-def]
    return UserOut(
        name=u.name,
        role=u.role,
        sites=list(u.sites),
        disabled=u.disabled,
        locked=bool(u.locked_until and u.locked_until > now),
        failed_logins=u.failed_logins,
        created_at=iso(u.created_at),
    )


@router.get("/users", response_model=list[UserOut], responses=ERRORS)
def list_users(request: Request, who: Principal = Depends(require("admin"))) -> list[UserOut]:
    st = state(request)
    now = st.vault.clock()
    with st.vault.sessions() as s:
        return [_user_out(u, now) for u in s.scalars(select(User).order_by(User.name))]


@router.post("/users", status_code=201, response_model=UserOut, responses=ERRORS)
@in_pool("passwords")
def create_user(request: Request, body: UserIn, who: Principal = Depends(require("admin"))) -> UserOut:
    """Create an account (same rules as `holdfast users add`)."""
    st = state(request)
    _known_sites(st, body.sites)
    try:
        with st.vault.sessions.begin() as s:
            u = add_user(
                s,
                body.name,
                body.role,
                body.sites,
                body.password,
                st.vault.clock(),
                access_log=st.vault.access_log,
                by=Actor(who.name, who.role),
            )
    except UserError as e:
        raise HTTPException(400, str(e)) from None
    return _user_out(u, st.vault.clock())


def _known_sites(st: Any, sites: list[str]) -> None:
    known = {x.id for x in st.cfg.sites}
    for site in sites:
        if site not in known:
            raise HTTPException(400, f"unknown site {site!r}")


def _change(request: Request, who: Principal, change: Callable[..., Any]) -> Any:
    """Run one vault.people.users change in a transaction, acting as `who`; 404/400 with the reason."""
    st = state(request)
    now = st.vault.clock()
    try:
        with st.vault.sessions.begin() as s:
            result = change(s, st.vault.access_log, Actor(who.name, who.role), now)
            return _user_out(result, now) if isinstance(result, User) else result
    except UnknownUser as e:
        raise HTTPException(404, str(e)) from None
    except UserError as e:
        raise HTTPException(400, str(e)) from None


@router.put("/users/{name}/role", response_model=UserOut, responses=ERRORS)
def set_role(
    request: Request, name: UserName, body: RoleIn, who: Principal = Depends(require("admin"))
) -> UserOut:
    """Change an account's role (security needs sites, other roles take none); applies at its next request."""
    _known_sites(state(request), body.sites)
    return _change(
        request, who, lambda s, al, by, now: users.set_role(s, al, by, name, body.role, body.sites, now)
    )  # type: ignore[no-any-return]


@router.put("/users/{name}/sites", response_model=UserOut, responses=ERRORS)
def set_sites(
    request: Request, name: UserName, body: SitesIn, who: Principal = Depends(require("admin"))
) -> UserOut:
    """Change a security account's sites; applies at its next request."""
    _known_sites(state(request), body.sites)
    return _change(request, who, lambda s, al, by, now: users.set_sites(s, al, by, name, body.sites, now))  # type: ignore[no-any-return]


@router.post("/users/{name}/disable", response_model=UserOut, responses=ERRORS)
def disable(request: Request, name: UserName, who: Principal = Depends(require("admin"))) -> UserOut:
    """Disable an account: logins refused, every session ended at once."""
    return _change(request, who, lambda s, al, by, now: users.set_disabled(s, al, by, name, True, now))  # type: ignore[no-any-return]


@router.post("/users/{name}/enable", response_model=UserOut, responses=ERRORS)
def enable(request: Request, name: UserName, who: Principal = Depends(require("admin"))) -> UserOut:
    """Enable a disabled account (it logs in afresh)."""
    return _change(request, who, lambda s, al, by, now: users.set_disabled(s, al, by, name, False, now))  # type: ignore[no-any-return]


@router.post("/users/{name}/unlock", response_model=UserOut, responses=ERRORS)
def unlock(request: Request, name: UserName, who: Principal = Depends(require("admin"))) -> UserOut:
    """Clear an account's failed-login lock."""
    return _change(request, who, lambda s, al, by, now: users.unlock(s, al, by, name, now))  # type: ignore[no-any-return]


@router.post("/users/{name}/logout", response_model=SessionsEnded, responses=ERRORS)
def logout(request: Request, name: UserName, who: Principal = Depends(require("admin"))) -> SessionsEnded:
    """Log an account out everywhere: every session and token ends."""
    n = _change(request, who, lambda s, al, by, now: users.logout_everywhere(s, al, by, name, now))
    return SessionsEnded(sessions_ended=int(n))


@router.delete("/users/{name}", status_code=204, responses=ERRORS)
def remove(request: Request, name: UserName, who: Principal = Depends(require("admin"))) -> Response:
    """Remove an account and end its sessions (its name stays in the logs)."""
    _change(request, who, lambda s, al, by, now: users.remove_user(s, al, by, name, now))
    return Response(status_code=204)


@router.get("/health", response_model=HealthOut, responses=ERRORS)
def health(request: Request, who: Principal = Depends(require("admin"))) -> HealthOut:
    """Store usage, segment count and spool backlog: what an administrator watches."""
    st = state(request)
    with st.vault.sessions() as s:
        n, lo, hi = index_summary(s)
    try:
        used, total = st.vault.store.usage()
    except OSError:
        used, total = 0, 0
    spool = st.cfg.paths.spool
    backlog = len(list(spool.glob("*.seg"))) if spool.is_dir() else 0
    return HealthOut(
        segments=n,
        store_used_bytes=used,
        store_total_bytes=total,
        spool_backlog=backlog,
        oldest_segment=iso(lo) if lo else None,
        newest_segment=iso(hi) if hi else None,
    )
