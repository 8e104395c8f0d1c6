"""Invariant 9: every view, export and hold change names a user, a purpose and a time.

Routes call `record()`; the entry goes to the vault's tamper-evident access log. Recording
happens *before* footage leaves the box: if the log cannot be written, the view is refused.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from api.deps import Principal
from api.state import AppState
from vault.log import event
from vault.timeutil import iso

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
    entry: dict[str, Any] = {
        "time": iso(st.vault.clock()),
        "user": who.name,
        "role": who.role,
        "action": action,
        "purpose": purpose,
        "source": source,
        "start": iso(start) if start else None,
        "end": iso(end) if end else None,
        "result": result,
    }
    if detail:
        entry["detail"] = detail
    seq = st.access_log.append(entry)
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
