"""Who is asking, and may they: authentication (cookie or bearer) and deny-by-default roles.

Every route declares the roles it admits with `require(...)`; a route that forgets to is
unreachable rather than open, because `require()` with no roles admits nobody.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from fastapi import Depends, HTTPException, Request, Security
from fastapi.security import APIKeyCookie, HTTPAuthorizationCredentials, HTTPBearer

from api.state import AppState
from vault.people.users import token_owner

COOKIE = "holdfast_session"
bearer_scheme = HTTPBearer(auto_error=False, description="token from POST /api/v1/auth/token")
cookie_scheme = APIKeyCookie(name=COOKIE, auto_error=False, description="session cookie from the web page")


@dataclass(frozen=True)
class Principal:
    user_id: int
    name: str
    role: str
    sites: frozenset[str]

    def barred_from(self, site: str) -> bool:
        """Security staff see only their assigned sites; other roles are limited by role, not site."""
        return self.role == "security" and site not in self.sites


def state(request: Request) -> AppState:
    return request.app.state.holdfast  # type: ignore[no-any-return]


def principal(
    request: Request,
    bearer: HTTPAuthorizationCredentials | None = Security(bearer_scheme),
    cookie: str | None = Security(cookie_scheme),
) -> Principal:
    token = bearer.credentials if bearer is not None else cookie
    if not token:
        raise HTTPException(401, "authentication required", headers={"WWW-Authenticate": "Bearer"})
    st = state(request)
    owner = token_owner(st.vault.reader, token, st.vault.clock())
    if owner is None:
        raise HTTPException(
            401, "session expired or unknown token: log in again", headers={"WWW-Authenticate": "Bearer"}
        )
    who = Principal(owner.user_id, owner.name, owner.role, frozenset(owner.sites))
    # Kept for the error handlers: a refusal after this point is logged with the user's name.
    request.state.principal = who
    return who


def require(*roles: str) -> Callable[..., Principal]:
    allowed = frozenset(roles)

    # async: a pure check runs on the event loop instead of costing a second thread hop.
    async def check(p: Principal = Depends(principal)) -> Principal:
        if p.role not in allowed:
            raise HTTPException(
                403, f"role {p.role!r} may not do this (allowed: {', '.join(sorted(allowed)) or 'nobody'})"
            )
        return p

    check.roles = allowed  # type: ignore[attr-defined]  # read by api.auth.views_for
    return check
