"""Auditor views: access log, purge log with its latest checkpoint, verification, compliance.

No footage here: auditors read *about* footage, never the footage itself. Verification is
vault.ledger.verify.verify_log, the same code `holdfast audit verify` runs offline on an export.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request
from pydantic import BaseModel, Field
from sqlalchemy import func, select

from api.deps import Principal, require, state
from api.errors import ERRORS
from api.pools import in_pool
from vault.index.schema import AccessLogRow, PurgeLogRow
from vault.ledger import verify as tlogverify
from vault.ledger.ledgers import AuditLog
from vault.ledger.report import compliance_report
from vault.ops.logsetup import event
from vault.sealed import keys
from vault.timeutil import parse_iso

log = logging.getLogger("holdfast.api.audit")
router = APIRouter(prefix="/api/v1/audit", tags=["audit"])


class LogPage(BaseModel):
    total: int
    offset: int
    entries: list[dict[str, Any]]
    checkpoint: dict[str, Any] | None = None


class VerifyOut(BaseModel):
    log: str
    ok: bool
    entries: int
    checkpoints: int
    verified_size: int
    summary: str


def _page(st: Any, alog: AuditLog, offset: int, limit: int, conds: list[Any] | None = None) -> LogPage:
    """One page, oldest first; with search conditions, `offset` counts matching entries."""
    with st.vault.sessions() as s:
        cp = alog.latest_checkpoint(s)
        q = select(alog.model.seq, alog.model.entry).order_by(alog.model.seq).limit(limit)
        if conds:
            total = s.scalar(select(func.count()).select_from(alog.model).where(*conds)) or 0
            rows = s.execute(q.where(*conds).offset(offset)).all()
        else:
            total = alog.size(s)
            rows = s.execute(q.where(alog.model.seq >= offset)).all()
    entries = [json.loads(text) for _seq, text in rows]
    return LogPage(total=total, offset=offset, entries=entries, checkpoint=cp.to_dict() if cp else None)


Offset = Annotated[int, Query(ge=0, le=2**53)]
Limit = Annotated[int, Query(ge=1, le=1000)]
SegmentQ = Annotated[str | None, Query(pattern=r"^[A-Za-z0-9_-]{1,64}$", description="only this segment")]
UserQ = Annotated[str | None, Query(min_length=1, max_length=200, description="only this user")]
TimeQ = Annotated[str | None, Query(max_length=64, description="ISO 8601 with offset")]


@dataclass
class LogSearch:
    """The paging and searches both logs answer (a FastAPI dependency: query parameters)."""

    offset: Offset = 0
    limit: Limit = 100
    segment: SegmentQ = None
    since: TimeQ = None
    until: TimeQ = None

    def time_conds(self, column: Any) -> list[Any]:
        """`since <= column < until`, for the bounds given; a bad time is the client's 400."""
        conds = []
        for value, what, op in ((self.since, "since", column.__ge__), (self.until, "until", column.__lt__)):
            if value:
                try:
                    conds.append(op(parse_iso(value, what)))
                except ValueError as e:
                    raise HTTPException(400, str(e)) from None
        return conds


@router.get("/access-log", response_model=LogPage, responses=ERRORS)
def access_log(
    request: Request,
    q: Annotated[LogSearch, Depends()],
    user: UserQ = None,
    who: Principal = Depends(require("auditor", "dpo")),
) -> LogPage:
    """Who viewed, exported or changed a hold on what, when, and why (paged, oldest first);
    searchable by segment, user and time."""
    st = state(request)
    conds = q.time_conds(AccessLogRow.at)
    if user:
        conds.append(AccessLogRow.user == user)
    if q.segment:  # canonical JSON: the field is written exactly like this
        conds.append(AccessLogRow.entry.contains(f'"segment":"{q.segment}"', autoescape=True))
    return _page(st, st.vault.access_log, q.offset, q.limit, conds)


@router.get("/purge-log", response_model=LogPage, responses=ERRORS)
def purge_log(
    request: Request, q: Annotated[LogSearch, Depends()], who: Principal = Depends(require("auditor", "dpo"))
) -> LogPage:
    """Every purged segment, one entry each (paged), with the latest signed checkpoint;
    searchable by segment and purge time."""
    st = state(request)
    conds = q.time_conds(PurgeLogRow.purged_at)
    if q.segment:
        conds.append(PurgeLogRow.segment_id == q.segment)
    return _page(st, st.vault.purge_log, q.offset, q.limit, conds)


@router.get("/verify", response_model=list[VerifyOut], responses=ERRORS)
@in_pool("long")
def verify(request: Request, who: Principal = Depends(require("auditor", "dpo"))) -> list[VerifyOut]:
    """Sign the current heads, then verify both logs with the public key (as `holdfast audit verify`)."""
    st = state(request)
    v = st.vault
    pub = keys.load_sign_public(v.cfg.keys.dir / keys.SIGN_PUB)
    out = []
    for alog in (v.purge_log, v.access_log):
        with v.sessions.begin() as s:
            alog.checkpoint(s, v.sign_key, v.clock())
        with v.sessions() as s:
            _size, signed, cps = alog.signed_cut(s)
            entries = [text.encode("utf-8") for _seq, text in signed]
        rep = tlogverify.verify_log(entries, cps, pub, origin=alog.origin)
        out.append(
            VerifyOut(
                log=alog.name,
                ok=rep.ok,
                entries=rep.entry_count,
                checkpoints=rep.checkpoint_count,
                verified_size=rep.verified_size,
                summary=rep.summary(),
            )
        )
        event(log, "audit.verified", log=alog.name, ok=rep.ok, entries=rep.entry_count, user=who.name)
    return out


class LogExportOut(BaseModel):
    log: str
    origin: str
    entries: list[str] = Field(description="each entry's exact text in log order: the Merkle tree's leaves")
    checkpoints: list[dict[str, Any]] = Field(
        description="signed checkpoints (origin, size, root, time, key_id, signature)"
    )


@router.get("/logs/{name}", response_model=LogExportOut, responses=ERRORS)
@in_pool("long")
def export_log(
    request: Request,
    name: Annotated[str, Path(pattern="^(purge|access)$", description="`purge` or `access`")],
    who: Principal = Depends(require("auditor", "dpo")),
) -> LogExportOut:
    """A whole log as `holdfast audit export` writes it, for verifying it elsewhere (the page does,
    in the browser, with a public key the auditor brings): the current head is signed first."""
    st = state(request)
    v = st.vault
    alog = v.purge_log if name == "purge" else v.access_log
    with v.sessions.begin() as s:
        alog.checkpoint(s, v.sign_key, v.clock())
    with v.sessions() as s:
        entries = [text for _seq, text in alog.entries(s)]
        cps = [c.to_dict() for c in alog.checkpoints(s)]
    event(log, "audit.exported", log=alog.name, entries=len(entries), user=who.name)
    return LogExportOut(log=alog.name, origin=alog.origin, entries=entries, checkpoints=cps)


@router.get("/compliance", response_model=dict[str, Any], responses=ERRORS)
@in_pool("long")
def compliance(request: Request, who: Principal = Depends(require("auditor", "dpo"))) -> dict[str, Any]:
    """Per retention class: stored, held, overdue (past deadline, unheld): "nothing outlived its deadline"."""
    st = state(request)
    rep = compliance_report(st.vault, st.vault.clock())
    rep["ok"] = all(c["overdue"] == 0 for c in rep["classes"].values())
    return rep
