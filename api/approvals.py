"""Four eyes on a request: filing, deciding and breaking glass over HTTP, and the check footage routes call.

The rules are the vault's (vault/people/approvals.py); this module turns its answers into HTTP ones.
Footage routes call `require_approval(...)` once, after their own role, site and purpose checks
and before anything is served: no rule applies -> nothing happens; a covering approval -> the
request remembers its id and the route's access-log entry carries it as `approval_request`
(api.accesslog.record); none -> 403 with what to do, itself a `denied` access-log entry.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session

from api.deps import Principal, require, state
from api.errors import ERRORS
from api.state import AppState
from vault.people import approvals
from vault.people.approvals import Person

router = APIRouter(prefix="/api/v1/approvals", tags=["approvals"])

Action = Literal["view", "export", "call_audio"]
RequestId = Annotated[int, Path(ge=1, le=2**31 - 1)]


def person(who: Principal) -> Person:
    return Person(who.name, who.role, who.sites)


def _http(e: approvals.ApprovalError) -> HTTPException:
    if isinstance(e, approvals.UnknownRequest):
        return HTTPException(404, str(e))
    if isinstance(e, approvals.NotAllowed | approvals.ApprovalRequired):
        return HTTPException(403, str(e))
    if isinstance(e, approvals.AlreadyDecided):
        return HTTPException(409, str(e))
    return HTTPException(400, str(e))


def require_approval(
    st: AppState,
    who: Principal,
    request: Request,
    action: str,
    sources: list[str],
    start: datetime,
    end: datetime,
) -> None:
    """403 unless this access needs no approval or an approved request covers it (see module doc).

    A `view` of a call line is checked as `call_audio`.
    """
    if not st.cfg.approvals.rules:
        return
    acts = {approvals.access_action(st.cfg, action, s) for s in sources}
    now = st.vault.clock()
    try:
        with st.vault.sessions() as s:
            for act in sorted(acts):
                srcs = [x for x in sources if approvals.access_action(st.cfg, action, x) == act]
                found = approvals.check_access(s, st.cfg, person(who), act, srcs, start, end, now)
                if found is not None:
                    request.state.approval_request = found.id
    except approvals.ApprovalError as e:
        raise _http(e) from None


class AccessIn(BaseModel):
    """The access a request or a break-glass grant is for: action, sources and [start, end)."""

    action: Action
    sources: list[Annotated[str, Field(max_length=64)]] = Field(
        min_length=1, max_length=approvals.MAX_SOURCES
    )
    start: str = Field(max_length=64, description="ISO 8601 with offset; the range is [start, end)")
    end: str = Field(max_length=64)


class RequestIn(AccessIn):
    purpose: str = Field(min_length=3, max_length=500, description="why: `incident:ID` or a reason")


class BreakGlassIn(AccessIn):
    reason: str = Field(
        max_length=500, description="the emergency, at least `break_glass_min_reason` characters"
    )


class DecisionIn(BaseModel):
    reason: str = Field(default="", max_length=500)


class ApprovalOut(BaseModel):
    id: int
    requester: str
    requester_role: str
    action: str
    sources: list[str]
    sites: list[str]
    start: str
    end: str
    purpose: str
    state: str = Field(description="pending, approved, refused, break_glass or expired")
    created_at: str
    expires_at: str
    decided_by: str | None
    decided_at: str | None
    reason: str | None


class PolicyOut(BaseModel):
    """What the page needs to know: whether any rule exists and whether this user may decide."""

    rules: int
    approver: bool
    break_glass_min_reason: int
    break_glass_minutes: int
    expire_hours: float


def _out(st: AppState, a: approvals.Approval) -> ApprovalOut:
    return ApprovalOut(**a.as_dict(st.vault.clock()))


def _range(start: str, end: str) -> tuple[datetime, datetime]:
    from api.footage import parse_range  # footage calls require_approval from this module

    return parse_range(start, end)


def _text_problem(text: str) -> None:
    from api.footage import purpose_problem

    problem = purpose_problem(text)
    if problem is not None:
        raise HTTPException(400, problem)


ANYONE = ("security", "auditor", "dpo", "admin")


@router.get("/policy", response_model=PolicyOut, responses=ERRORS)
def policy(request: Request, who: Principal = Depends(require(*ANYONE))) -> PolicyOut:
    """Whether four-eyes rules are configured, and whether you may approve."""
    cfg = state(request).cfg.approvals
    return PolicyOut(
        rules=len(cfg.rules),
        approver=who.role in cfg.approver_roles,
        break_glass_min_reason=cfg.break_glass_min_reason,
        break_glass_minutes=cfg.break_glass_minutes,
        expire_hours=cfg.expire_hours,
    )


class CheckOut(BaseModel):
    """Whether an access would need approval now, and which request covers it (for the page)."""

    action: str
    needed: list[str] = Field(description="sources a rule applies to (empty: no approval needed)")
    covered_by: int | None = Field(description="the approved or break-glass request that covers it")


@router.get("/check", response_model=CheckOut, responses=ERRORS)
def check(
    request: Request,
    action: Annotated[Action, Query()],
    sources: Annotated[list[str], Query(min_length=1, max_length=approvals.MAX_SOURCES)],
    start: Annotated[str, Query(max_length=64)],
    end: Annotated[str, Query(max_length=64)],
    who: Principal = Depends(require("security", "dpo")),
) -> CheckOut:
    """Ask before an access: does it need approval, and is it covered? Not an access: not logged."""
    st = state(request)
    a, b = _range(start, end)
    now = st.vault.clock()
    acts = {approvals.access_action(st.cfg, action, x) for x in sources}
    act = action if len(acts) != 1 else acts.pop()
    need = approvals.needing_approval(st.cfg, who.role, act, sources, a, now)
    found = None
    if need:
        with st.vault.sessions() as s:
            found = approvals.covering(s, person(who), act, need, a, b, now)
    return CheckOut(action=act, needed=need, covered_by=found.id if found else None)


@router.get("", response_model=list[ApprovalOut], responses=ERRORS)
def list_requests(
    request: Request,
    who: Principal = Depends(require(*ANYONE)),
    state_: Annotated[
        Literal["pending", "approved", "refused", "break_glass"] | None, Query(alias="state")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> list[ApprovalOut]:
    """Your own requests; an approver sees everyone's (a security approver: their sites only)."""
    st = state(request)
    cfg = st.cfg.approvals
    approver = who.role in cfg.approver_roles
    with st.vault.sessions() as s:
        rows = approvals.listing(s, None if approver else who.name, state_, limit)
    if approver and who.role == "security":
        rows = [r for r in rows if r.requester == who.name or set(r.sites) <= who.sites]
    return [_out(st, r) for r in rows]


def _logged(request: Request, st: AppState, change: Callable[[Session], approvals.Approval]) -> ApprovalOut:
    """Run one change to a request in a transaction; the vault has written its access-log entry."""
    try:
        with st.vault.sessions.begin() as s:
            out = change(s)
    except approvals.ApprovalError as e:
        raise _http(e) from None
    request.state.access_logged = True
    return _out(st, out)


def _filed(
    request: Request, who: Principal, body: AccessIn, text: str, file: Callable[..., approvals.Approval]
) -> ApprovalOut:
    """File a request or a break-glass grant (`file`) for the access `body` names, `text` its
    purpose or reason: the same checks, then one transaction in which the vault logs it."""
    st = state(request)
    a, b = _range(body.start, body.end)
    _text_problem(text)
    return _logged(request, st, lambda s: file(
        s, st.vault.access_log, st.cfg, person(who), body.action, body.sources, a, b, text, st.vault.clock(),
    ))  # fmt: skip


@router.post("", status_code=201, response_model=ApprovalOut, responses=ERRORS)
def file_request(
    request: Request, body: RequestIn, who: Principal = Depends(require("security", "dpo"))
) -> ApprovalOut:
    """Ask a second person to approve one access: sources, [start, end), action and purpose (logged)."""
    return _filed(request, who, body, body.purpose, approvals.request)


@router.get("/{request_id}", response_model=ApprovalOut, responses=ERRORS)
def get_request(
    request: Request, request_id: RequestId, who: Principal = Depends(require(*ANYONE))
) -> ApprovalOut:
    """One request: its requester or an approver may read it."""
    st = state(request)
    try:
        with st.vault.sessions() as s:
            a = approvals.get(s, request_id)
    except approvals.ApprovalError as e:
        raise _http(e) from None
    if a.requester != who.name and who.role not in st.cfg.approvals.approver_roles:
        raise HTTPException(404, f"no approval request {request_id} visible to you")
    return _out(st, a)


def _decide(
    request: Request, request_id: int, body: DecisionIn, who: Principal, approve: bool
) -> ApprovalOut:
    st = state(request)
    _text_problem(body.reason)
    return _logged(request, st, lambda s: approvals.decide(
        s, st.vault.access_log, st.cfg, person(who), request_id, approve, body.reason,
        st.vault.clock(),
    ))  # fmt: skip


@router.post("/{request_id}/approve", response_model=ApprovalOut, responses=ERRORS)
def approve(
    request: Request, request_id: RequestId, body: DecisionIn, who: Principal = Depends(require(*ANYONE))
) -> ApprovalOut:
    """Approve a pending request (an approver, never its requester); valid `expire_hours` from now."""
    return _decide(request, request_id, body, who, True)


@router.post("/{request_id}/refuse", response_model=ApprovalOut, responses=ERRORS)
def refuse(
    request: Request, request_id: RequestId, body: DecisionIn, who: Principal = Depends(require(*ANYONE))
) -> ApprovalOut:
    """Refuse a pending request (an approver, never its requester)."""
    return _decide(request, request_id, body, who, False)


@router.post("/break-glass", status_code=201, response_model=ApprovalOut, responses=ERRORS)
def break_glass(
    request: Request, body: BreakGlassIn, who: Principal = Depends(require("security", "dpo"))
) -> ApprovalOut:
    """Emergency access without a second person for `break_glass_minutes`: needs a reason, is
    logged as `break_glass`, raises `holdfast_break_glass_total` and a WARNING alert event."""
    return _filed(request, who, body, body.reason, approvals.break_glass)
