"""Administrator: users and health. No footage (separation of duties)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Request
from pydantic import BaseModel, Field
from sqlalchemy import func, select

from api.deps import Principal, require, state
from api.errors import ERRORS
from vault.db import Segment
from vault.timeutil import iso
from vault.users import NAME_RE, ROLES, User, UserError, add_user

router = APIRouter(prefix="/api/v1", tags=["admin"])


class UserOut(BaseModel):
    name: str
    role: str
    sites: list[str]
    disabled: bool
    locked: bool
    created_at: str


class UserIn(BaseModel):
    name: str = Field(pattern=NAME_RE.pattern)
    role: Annotated[str, Field(pattern="^(" + "|".join(ROLES) + ")$")]
    sites: list[Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")]] = Field(
        default=[], max_length=100
    )
    password: str = Field(min_length=10, max_length=1024)


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
        created_at=iso(u.created_at),
    )


@router.get("/users", response_model=list[UserOut], responses=ERRORS)
def list_users(request: Request, who: Principal = Depends(require("admin"))) -> list[UserOut]:
    st = state(request)
    now = st.vault.clock()
    with st.vault.sessions() as s:
        return [_user_out(u, now) for u in s.scalars(select(User).order_by(User.name))]


@router.post("/users", status_code=201, response_model=UserOut, responses=ERRORS)
def create_user(request: Request, body: UserIn, who: Principal = Depends(require("admin"))) -> UserOut:
    """Create an account (same rules as `holdfast users add`)."""
    st = state(request)
    known = {x.id for x in st.cfg.sites}
    for site in body.sites:
        if site not in known:
            raise HTTPException(400, f"unknown site {site!r}")
    try:
        with st.vault.sessions.begin() as s:
            u = add_user(s, body.name, body.role, body.sites, body.password, st.vault.clock())
    except UserError as e:
        raise HTTPException(400, str(e)) from None
    return _user_out(u, st.vault.clock())


@router.get("/health", response_model=HealthOut, responses=ERRORS)
def health(request: Request, who: Principal = Depends(require("admin"))) -> HealthOut:
    """Store usage, segment count and spool backlog: what an administrator watches."""
    st = state(request)
    with st.vault.sessions() as s:
        n = s.scalar(select(func.count()).select_from(Segment)) or 0
        lo, hi = s.execute(select(func.min(Segment.start), func.max(Segment.end))).one()
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
