"""Four eyes on a request, not a login: which accesses need a second person, and whether one agreed.

`[approvals]` in the config names, per site and role, the actions (view, export, call_audio;
optionally only for footage older than N hours) that need approval. A request names its
sources (cameras or call lines), a time range [start, end), a purpose and the action; an
approver (a role in `approver_roles`, never the requester, a security approver only for their
own sites) approves or refuses it once. An approval is bound to that request: it covers an
access only by the same requester, for the same action, on a subset of its sources, inside its
range, before it expires. It may be used for several accesses within those bounds until then.

Break glass: a user may grant themself a short-lived access without a second person in an
emergency, with a reason of at least `break_glass_min_reason` characters; it is an access-log
entry with action `break_glass`, a WARNING event `approvals.break_glass` (alert=true), and the
metric `holdfast_break_glass_total` (vault/ops/metrics.py counts the rows).

Every step is an access-log entry in the same transaction as the change: `approval.request`,
`approval.approve` / `approval.refuse`, `break_glass`, each with `details.request` (the request
id); the access an approval allowed carries `details.approval_request` (api/approvals.py).
Concurrent decisions on one request are serialised by the database: the decision locks the
request's row (SQLite: BEGIN IMMEDIATE; PostgreSQL: SELECT ... FOR UPDATE) and only a pending
request can be decided, so exactly one decision wins and the others get AlreadyDecided.

At about 500 lines: the rules (which access needs whom), the covering check and the decisions are
one policy, kept in one place so it is read whole.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from config.model import ApprovalRule, HoldfastConfig
from vault.errors import HoldfastError
from vault.index.db import begin_write
from vault.index.schema import ApprovalRow
from vault.ledger.ledgers import AccessLog
from vault.ops.logsetup import event
from vault.timeutil import iso

log = logging.getLogger("holdfast.approvals")

ACTIONS = ("view", "export", "call_audio")
#: Request states; `approved` and `break_glass` grant access until `expires_at`.
PENDING, APPROVED, REFUSED, BREAK_GLASS = "pending", "approved", "refused", "break_glass"
GRANTING = (APPROVED, BREAK_GLASS)
#: Longest purpose or reason kept (as the access log's purposes).
MAX_TEXT = 500
#: Most sources one request names.
MAX_SOURCES = 64


class ApprovalError(HoldfastError):
    """A request, decision or override cannot be made as asked (bad input)."""


class UnknownRequest(ApprovalError):
    """No approval request with that id."""


class NotAllowed(ApprovalError):
    """This person may not decide this request (their own, not an approver, not their site)."""


class AlreadyDecided(ApprovalError):
    """The request was approved, refused or has lapsed: a decision is made once."""


class ApprovalRequired(ApprovalError):
    """The access needs an approved request that covers it, and there is none."""

    def __init__(self, message: str, action: str, sources: list[str]) -> None:
        super().__init__(message)
        self.action = action
        self.sources = sources


@dataclass(frozen=True)
class Person:
    """Who asks or decides, as the access log names them; `sites` bounds a security role."""

    name: str
    role: str
    sites: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Approval:
    id: int
    requester: str
    requester_role: str
    action: str
    sources: tuple[str, ...]
    sites: tuple[str, ...]
    start: datetime
    end: datetime
    purpose: str
    state: str
    created_at: datetime
    expires_at: datetime
    decided_by: str | None
    decided_at: datetime | None
    reason: str | None

    def status(self, now: datetime) -> str:
        """The state as a person reads it: a lapsed pending request or an expired grant says so."""
        if self.state in (PENDING, *GRANTING) and self.expires_at <= now:
            return "expired"
        return self.state

    def as_dict(self, now: datetime) -> dict[str, Any]:
        return {
            "id": self.id,
            "requester": self.requester,
            "requester_role": self.requester_role,
            "action": self.action,
            "sources": list(self.sources),
            "sites": list(self.sites),
            "start": iso(self.start),
            "end": iso(self.end),
            "purpose": self.purpose,
            "state": self.status(now),
            "created_at": iso(self.created_at),
            "expires_at": iso(self.expires_at),
            "decided_by": self.decided_by,
            "decided_at": iso(self.decided_at) if self.decided_at else None,
            "reason": self.reason,
        }


def _view(r: ApprovalRow) -> Approval:
    return Approval(
        r.id,
        r.requester,
        r.requester_role,
        r.action,
        tuple(r.sources),
        tuple(r.sites),
        r.start,
        r.end,
        r.purpose,
        r.state,
        r.created_at,
        r.expires_at,
        r.decided_by,
        r.decided_at,
        r.reason,
    )


# -- which accesses need approval ------------------------------------------------------------


def _applies(rule: ApprovalRule, action: str, role: str, site: str, start: datetime, now: datetime) -> bool:
    if rule.action != action or (rule.roles and role not in rule.roles):
        return False
    if rule.sites and site not in rule.sites:
        return False
    return rule.older_than_hours is None or start < now - timedelta(hours=rule.older_than_hours)


def needing_approval(
    cfg: HoldfastConfig, role: str, action: str, sources: list[str], start: datetime, now: datetime
) -> list[str]:
    """The sources of this access that a rule says need approval (empty: the access is free).

    An age rule triggers when the accessed range begins more than `older_than_hours` before now.
    A source no longer in the config (footage kept after its camera was removed) has no site:
    only rules for every site apply to it.
    """
    out = []
    for src in sources:
        try:
            site = cfg.source(src).site
        except KeyError:
            site = ""
        if any(_applies(r, action, role, site, start, now) for r in cfg.approvals.rules):
            out.append(src)
    return out


def access_action(cfg: HoldfastConfig, action: str, source: str) -> str:
    """A `view` of a call line is `call_audio`; everything else keeps its action."""
    try:
        line = cfg.source_kind(source) == "line"
    except KeyError:  # no longer configured: checked under the action asked for
        return action
    return "call_audio" if action == "view" and line else action


def covering(
    session: Session,
    who: Person,
    action: str,
    sources: list[str],
    start: datetime,
    end: datetime,
    now: datetime,
) -> Approval | None:
    """The newest granting request that covers this access, if any: same requester and action,
    its sources a superset, [start, end) inside its range, not expired."""
    rows = session.scalars(
        select(ApprovalRow)
        .where(
            ApprovalRow.requester == who.name,
            ApprovalRow.action == action,
            ApprovalRow.state.in_(GRANTING),
            ApprovalRow.expires_at > now,
            ApprovalRow.start <= start,
            ApprovalRow.end >= end,
        )
        .order_by(ApprovalRow.id.desc())
    )
    want = set(sources)
    for r in rows:
        if want <= set(r.sources):
            return _view(r)
    return None


def check_access(
    session: Session,
    cfg: HoldfastConfig,
    who: Person,
    action: str,
    sources: list[str],
    start: datetime,
    end: datetime,
    now: datetime,
) -> Approval | None:
    """None when no rule applies; the covering approval when one does; ApprovalRequired otherwise."""
    need = needing_approval(cfg, who.role, action, sources, start, now)
    if not need:
        return None
    found = covering(session, who, action, need, start, end, now)
    if found is None:
        raise ApprovalRequired(
            f"needs approval: {action} of {', '.join(need)} from {iso(start)} to {iso(end)} needs a "
            "second person's approval; request it (POST /api/v1/approvals) and wait for an approver, "
            "or in an emergency use break glass (POST /api/v1/approvals/break-glass) with a reason",
            action,
            need,
        )
    return found


# -- requests, decisions, break glass ---------------------------------------------------------


def _validated(
    cfg: HoldfastConfig, who: Person, action: str, sources: list[str], start: datetime, end: datetime
) -> tuple[list[str], list[str]]:
    if action not in ACTIONS:
        raise ApprovalError(f"unknown action {action!r}: one of {', '.join(ACTIONS)}")
    srcs = sorted(set(sources))
    if not srcs or len(srcs) > MAX_SOURCES:
        raise ApprovalError(f"name between 1 and {MAX_SOURCES} cameras or call lines")
    if start.tzinfo is None or end.tzinfo is None or not start < end:
        raise ApprovalError("the range must have a start before its end (timezone-aware)")
    sites = []
    for s in srcs:
        try:
            src = cfg.source(s)
        except KeyError as e:
            raise ApprovalError(str(e.args[0])) from None
        if who.role == "security" and src.site not in who.sites:
            raise NotAllowed(f"{s} is at site {src.site!r}, which is not assigned to you")
        if (action == "call_audio") != (cfg.source_kind(s) == "line"):
            what = "call lines" if action == "call_audio" else "cameras"
            raise ApprovalError(f"{s}: action {action} names {what} only")
        sites.append(src.site)
    return srcs, sorted(set(sites))


def _text(value: str, what: str, minimum: int) -> str:
    v = value.strip()
    if len(v) < minimum:
        raise ApprovalError(f"{what} must be at least {minimum} characters (got {len(v)})")
    if len(v) > MAX_TEXT:
        raise ApprovalError(f"{what} is {len(v)} characters; at most {MAX_TEXT}")
    return v


def _log_step(
    session: Session,
    access_log: AccessLog,
    who: Person,
    step: str,
    purpose: str,
    now: datetime,
    row: ApprovalRow,
    **details: Any,
) -> None:
    """One step of a request in the access log, in the caller's transaction: who took it, the
    sources and range the request names, and its id."""
    access_log.record_by(
        session,
        who,
        action=step,
        purpose=purpose,
        at=now,
        source=",".join(row.sources),
        start=row.start,
        end=row.end,
        request=row.id,
        **details,
    )


def _filed(
    session: Session,
    access_log: AccessLog,
    cfg: HoldfastConfig,
    who: Person,
    action: str,
    sources: list[str],
    start: datetime,
    end: datetime,
    text: str,
    now: datetime,
    glass: bool,
) -> ApprovalRow:
    """Validate and store one request row with its access-log entry in the caller's transaction.
    A break-glass row is decided by its own requester at filing, its `text` the reason; any other
    is pending, its `text` the purpose."""
    srcs, sites = _validated(cfg, who, action, sources, start, end)
    if glass:
        text = _text(text, "a break-glass reason", cfg.approvals.break_glass_min_reason)
        expires = now + timedelta(minutes=cfg.approvals.break_glass_minutes)
    else:
        text = _text(text, "purpose", 3)
        expires = now + timedelta(hours=cfg.approvals.expire_hours)
    row = ApprovalRow(
        requester=who.name,
        requester_role=who.role,
        action=action,
        sources=srcs,
        sites=sites,
        start=start,
        end=end,
        purpose=text,
        state=BREAK_GLASS if glass else PENDING,
        created_at=now,
        expires_at=expires,
    )
    if glass:
        row.decided_by, row.decided_at, row.reason = who.name, now, text
    session.add(row)
    session.flush()
    extra = {"expires": iso(expires)} if glass else {}
    step = "break_glass" if glass else "approval.request"
    _log_step(session, access_log, who, step, text, now, row, requested_action=action, sources=srcs, **extra)
    return row


def request(
    session: Session,
    access_log: AccessLog,
    cfg: HoldfastConfig,
    who: Person,
    action: str,
    sources: list[str],
    start: datetime,
    end: datetime,
    purpose: str,
    now: datetime,
) -> Approval:
    """File a request (pending until decided or `expire_hours` pass); logged as `approval.request`."""
    row = _filed(session, access_log, cfg, who, action, sources, start, end, purpose, now, glass=False)
    event(
        log,
        "approvals.requested",
        request=row.id,
        user=who.name,
        action=action,
        sources=",".join(row.sources),
    )
    return _view(row)


def decide(
    session: Session,
    access_log: AccessLog,
    cfg: HoldfastConfig,
    approver: Person,
    request_id: int,
    approve: bool,
    reason: str,
    now: datetime,
) -> Approval:
    """Approve or refuse a pending request, once; the row is locked so concurrent deciders queue."""
    begin_write(session)
    row = session.scalars(select(ApprovalRow).where(ApprovalRow.id == request_id).with_for_update()).first()
    if row is None:
        raise UnknownRequest(f"no approval request {request_id}")
    if row.requester == approver.name:
        raise NotAllowed(
            f"you filed request {request_id} yourself: a second person must approve or refuse it"
        )
    if approver.role not in cfg.approvals.approver_roles:
        raise NotAllowed(
            f"role {approver.role!r} may not decide approval requests "
            f"(approver_roles: {', '.join(cfg.approvals.approver_roles)})"
        )
    if approver.role == "security" and not set(row.sites) <= approver.sites:
        raise NotAllowed(f"request {request_id} names sites not assigned to you: {', '.join(row.sites)}")
    if row.state != PENDING:
        raise AlreadyDecided(f"request {request_id} is {row.state} already (by {row.decided_by})")
    if row.expires_at <= now:
        raise AlreadyDecided(f"request {request_id} lapsed at {iso(row.expires_at)}: file a new one")
    text = reason.strip()[:MAX_TEXT]
    row.state = APPROVED if approve else REFUSED
    row.decided_by = approver.name
    row.decided_at = now
    row.reason = text or None
    if approve:
        row.expires_at = now + timedelta(hours=cfg.approvals.expire_hours)
    session.flush()
    verb = "approve" if approve else "refuse"
    _log_step(
        session,
        access_log,
        approver,
        "approval." + verb,
        text or f"{verb} request {request_id}",
        now,
        row,
        requester=row.requester,
        requested_action=row.action,
        expires=iso(row.expires_at) if approve else None,
    )
    event(log, "approvals." + ("approved" if approve else "refused"), request=row.id, by=approver.name)
    return _view(row)


def break_glass(
    session: Session,
    access_log: AccessLog,
    cfg: HoldfastConfig,
    who: Person,
    action: str,
    sources: list[str],
    start: datetime,
    end: datetime,
    reason: str,
    now: datetime,
) -> Approval:
    """An emergency override: access for `break_glass_minutes` without a second person, logged,
    alerted (WARNING event) and counted (holdfast_break_glass_total)."""
    row = _filed(session, access_log, cfg, who, action, sources, start, end, reason, now, glass=True)
    event(
        log,
        "approvals.break_glass",
        logging.WARNING,
        alert=True,
        request=row.id,
        user=who.name,
        role=who.role,
        action=action,
        sources=",".join(row.sources),
        start=iso(start),
        end=iso(end),
        expires=iso(row.expires_at),
        reason=row.reason,
    )
    return _view(row)


def get(session: Session, request_id: int) -> Approval:
    row = session.get(ApprovalRow, request_id)
    if row is None:
        raise UnknownRequest(f"no approval request {request_id}")
    return _view(row)


def listing(
    session: Session, requester: str | None = None, state: str | None = None, limit: int = 200
) -> list[Approval]:
    """Requests, newest first; `state` filters on the stored state (pending, approved, ...)."""
    q = select(ApprovalRow).order_by(ApprovalRow.id.desc()).limit(limit)
    if requester is not None:
        q = q.where(ApprovalRow.requester == requester)
    if state is not None:
        q = q.where(ApprovalRow.state == state)
    return [_view(r) for r in session.scalars(q)]


def counts(session: Session, now: datetime) -> tuple[int, int]:
    """(break-glass overrides ever, requests pending now): what vault/ops/metrics.py exposes."""
    glass = session.scalar(select(func.count()).where(ApprovalRow.state == BREAK_GLASS)) or 0
    pending = session.scalar(
        select(func.count()).where(ApprovalRow.state == PENDING, ApprovalRow.expires_at > now)
    )
    return int(glass), int(pending or 0)
