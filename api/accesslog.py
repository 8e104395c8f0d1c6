"""Invariant 9: every view, export and hold change names a user, a purpose and a time.

Routes call `record()`; the entry goes to the vault's tamper-evident access log
(vault.ledger.ledgers.AccessLog, on vault.ledger.entries). Recording happens *before* footage leaves the box:
if the log cannot be written, the request fails and nothing is served. Hold changes are logged
by vault.retention.holds in the same transaction as the change.

Requests that do not get that far are recorded too (`record_outcome()`, called by the app's error
handlers): on a footage, export, hold or account route, a refusal (401, 403, 404) is an entry
with result `denied`, any other failure (400, 409, 410, 416, 500, ...) one with result `failed`,
both naming the user (or `anonymous`), the route and the status. Validation errors (422) and
oversized bodies (413) are answered before anyone is identified and are not entries. A request
that already wrote its entry writes no second one, so a performed view is exactly one entry.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from fastapi import Request
from sqlalchemy.orm import Session

from api.deps import Principal
from api.state import AppState
from vault.ops.logsetup import event

log = logging.getLogger("holdfast.api.access")

#: Longest purpose an entry carries (a free-text purpose is refused above this; reasons the API
#: composes, such as an incident's description, are cut to it).
MAX_PURPOSE = 500

#: Routes whose refusals and failures are access-log entries, with the action each performs
#: (each must be a route the app has: tests/test_api_limits.py checks, so a rename cannot drop one).
AUDITED: dict[tuple[str, str], str] = {
    ("GET", "/api/v1/segments"): "search",
    ("GET", "/api/v1/timeline"): "search",
    ("GET", "/api/v1/extent"): "search",
    ("GET", "/api/v1/segments/{segment_id}/media"): "view",
    ("GET", "/api/v1/segments/{segment_id}/thumbnail"): "thumbnail",
    ("POST", "/api/v1/segments/{segment_id}/views"): "view",
    ("GET", "/api/v1/cameras/{camera_id}/playlist.m3u8"): "view",
    ("GET", "/api/v1/play/{ticket}/{name}"): "play",
    ("POST", "/api/v1/incidents"): "hold.add",
    ("POST", "/api/v1/incidents/{incident_id}/close"): "hold.release",
    ("POST", "/api/v1/incidents/{incident_id}/export"): "export",
    ("POST", "/api/v1/subject-requests"): "hold.add",
    ("POST", "/api/v1/subject-requests/{request_id}/close"): "hold.release",
    ("POST", "/api/v1/subject-requests/{request_id}/export"): "export",
    ("POST", "/api/v1/approvals"): "approval.request",
    ("POST", "/api/v1/approvals/{request_id}/approve"): "approval.approve",
    ("POST", "/api/v1/approvals/{request_id}/refuse"): "approval.refuse",
    ("POST", "/api/v1/approvals/break-glass"): "break_glass",
}
#: Account routes: every method on these prefixes.
ACCOUNT_PREFIXES = ("/api/v1/users",)
#: Path parameters that are capabilities, never written to the log.
SECRET_PARAMS = frozenset({"ticket"})


def bounded(purpose: str) -> str:
    """`purpose` cut to MAX_PURPOSE characters (for reasons composed from longer fields)."""
    return purpose if len(purpose) <= MAX_PURPOSE else purpose[: MAX_PURPOSE - 1] + "…"


def record(
    st: AppState,
    who: Principal,
    action: str,
    purpose: str,
    result: str = "ok",
    source: str | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    request: Request | None = None,
    session: Session | None = None,
    **detail: Any,
) -> int:
    """Append one access-log entry; returns its sequence number. With `request`, the request is
    marked as logged so its error handler does not add a second entry, and an approval that
    allowed it (api.approvals.require_approval) is named as `approval_request`. With `session`,
    the entry commits with the caller's transaction (a view and its ticket: one durable commit)."""
    approval = getattr(request.state, "approval_request", None) if request is not None else None
    if approval is not None:
        detail.setdefault("approval_request", approval)
    seq = st.vault.access_log.record(
        session,
        user=who.name,
        role=who.role,
        action=action,
        purpose=bounded(purpose),
        at=st.vault.clock(),
        source=source,
        start=start,
        end=end,
        result=result,
        **detail,
    )
    if request is not None:
        request.state.access_logged = True
    event(
        log,
        "access." + action,
        user=who.name,
        role=who.role,
        source=source or "",
        purpose=bounded(purpose),
        seq=seq,
        result=result,
    )
    return seq


def audited_action(request: Request) -> str | None:
    route = request.scope.get("route")
    template = getattr(route, "path", None)
    if not isinstance(template, str):
        return None
    action = AUDITED.get((request.method, template))
    if action is None and template.startswith(ACCOUNT_PREFIXES):
        action = "account"
    return action


def record_outcome(request: Request, status: int, detail: str) -> None:
    """The entry for a refused or failed request on an audited route (see the module docstring)."""
    if status in (413, 422) or getattr(request.state, "access_logged", False):
        return
    action = audited_action(request)
    if action is None:
        return
    from api.footage import purpose_problem  # footage imports this module

    st: AppState = request.app.state.holdfast
    who: Principal | None = getattr(request.state, "principal", None)
    raw = request.query_params.get("purpose")
    purpose = raw.strip() if raw is not None and purpose_problem(raw) is None else "(none given)"
    route = request.scope["route"].path
    target = {k: str(v)[:64] for k, v in request.path_params.items() if k not in SECRET_PARAMS}
    result = "denied" if status in (401, 403, 404) else "failed"
    try:
        seq = st.vault.access_log.record(
            None,
            user=who.name if who else "anonymous",
            role=who.role if who else "-",
            action=action,
            purpose=bounded(purpose),
            at=st.vault.clock(),
            result=result,
            route=f"{request.method} {route}",
            status=status,
            target=target or None,
            error=detail[:200],
        )
    except Exception as e:  # the answer stays the refusal; the failure to log it is an error event
        event(log, "access.unrecorded", logging.ERROR, route=route, status=status, error=repr(e)[:200])
        return
    request.state.access_logged = True
    event(
        log,
        "access." + result,
        user=who.name if who else "anonymous",
        route=f"{request.method} {route}",
        status=status,
        seq=seq,
    )
