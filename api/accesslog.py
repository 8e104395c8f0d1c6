"""Invariant 9: every view, export and hold change names a user, a purpose and a time.

Routes call `record()`; the entry goes to the vault's tamper-evident access log
(vault.auditlog.AccessLog, on vault.tlog). Recording happens *before* footage leaves the box:
if the log cannot be written, the request fails and nothing is served. Hold changes are logged
by vault.holds in the same transaction as the change.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from api.deps import Principal
from api.state import AppState
from vault.log import event

log = logging.getLogger("holdfast.api.access")


def record(
    st: AppState,
    who: Principal,
    action: str,
    purpose: str,
    result: str = "ok",
    source: str | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    **detail: Any,
) -> int:
    """Append one access-log entry; returns its sequence number."""
    seq = st.vault.access_log.record(
        None,
        user=who.name,
        role=who.role,
        action=action,
        purpose=purpose,
        at=st.vault.clock(),
        source=source,
        start=start,
        end=end,
        result=result,
        **detail,
    )
    event(
        log,
        "access." + action,
        user=who.name,
        role=who.role,
        source=source or "",
        purpose=purpose,
        seq=seq,
        result=result,
    )
    return seq
