"""Subject access requests (GDPR art. 15), for the DPO only.

Opening a request places a legal hold on its sources and range, so the footage survives its
retention deadline until the request is answered; answering (closing) it releases the hold
with a reason. The export is the one place footage is decoded: everyone but the subject is
irreversibly blurred (vault.media.redact), call audio is handed over as recorded (the subject is a
party to the call), and every export is logged with purpose `subject access request <id>`.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi import Path as PathParam
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field
from sqlalchemy import select

from api import accesslog
from api.approvals import require_approval
from api.deps import Principal, require, state
from api.errors import ERRORS, EXPORT_ERRORS
from api.exports import stream_export
from api.footage import parse_range
from api.pools import in_pool
from api.state import AppState
from config.model import ID_PATTERN
from vault.exports.evidence import Built, ExportPart, build_signed, gather_parts
from vault.exports.subject_export import manifest_header, part_renderer
from vault.index.schema import SubjectRequest
from vault.media.redact import Rect, RedactError, Redactor
from vault.ops.logsetup import event
from vault.retention import holds
from vault.timeutil import iso

log = logging.getLogger("holdfast.api.subjects")
router = APIRouter(prefix="/api/v1/subject-requests", tags=["subject requests"])
RequestId = Annotated[int, PathParam(ge=1, le=2**53)]
#: A request may cover up to a month (a subject rarely knows the day); an export up to 2 days.
MAX_REQUEST_RANGE = timedelta(days=31)
MAX_EXPORT_RANGE = timedelta(days=2)


def purpose_of(req_id: int) -> str:
    return f"subject access request {req_id}"


class SubjectRequestIn(BaseModel):
    subject: str = Field(min_length=3, max_length=2000, description="who asks, as the DPO identifies them")
    identity_verified: bool = Field(
        description="the requester's identity was checked (Heka: before answering)"
    )
    identity_note: str = Field(default="", max_length=2000, description="how the identity was verified")
    sources: list[Annotated[str, Field(pattern=ID_PATTERN)]] = Field(min_length=1, max_length=64)
    start: str = Field(max_length=64, examples=["2026-11-21T08:00:00Z"])
    end: str = Field(max_length=64, examples=["2026-11-21T09:00:00Z"])


class IdentityIn(BaseModel):
    note: str = Field(min_length=3, max_length=2000, description="how the identity was verified")


class CloseIn(BaseModel):
    reason: str = Field(min_length=3, max_length=2000, examples=["answered: export sent by registered mail"])


class RectIn(BaseModel):
    x: float = Field(ge=0, lt=1)
    y: float = Field(ge=0, lt=1)
    w: float = Field(gt=0, le=1)
    h: float = Field(gt=0, le=1)


class ExportIn(BaseModel):
    blur: Literal["faces", "all"] = Field(
        default="faces", description="faces: detected faces blurred; all: everything but `subject_rect`"
    )
    subject_rect: RectIn | None = Field(
        default=None, description="the subject, as fractions of the frame; required for blur=all"
    )
    sources: list[Annotated[str, Field(pattern=ID_PATTERN)]] | None = Field(default=None, max_length=64)
    start: str | None = Field(default=None, max_length=64)
    end: str | None = Field(default=None, max_length=64)


class SubjectRequestOut(BaseModel):
    id: int
    subject: str
    identity_verified: bool
    identity_note: str
    identity_verified_by: str | None = None
    sources: list[str]
    start: str
    end: str
    received_at: str
    deadline: str
    overdue: bool
    state: str
    hold_id: str | None
    opened_by: str
    closed_by: str | None
    closed_at: str | None
    close_reason: str | None
    exports: list[dict[str, Any]]


def out(r: SubjectRequest, now: datetime) -> SubjectRequestOut:
    return SubjectRequestOut(
        id=r.id,
        subject=r.subject,
        identity_verified=r.identity_verified,
        identity_note=r.identity_note,
        identity_verified_by=r.identity_verified_by,
        sources=list(r.sources),
        start=iso(r.start),
        end=iso(r.end),
        received_at=iso(r.received_at),
        deadline=iso(r.deadline),
        overdue=r.state == "open" and now > r.deadline,
        state=r.state,
        hold_id=r.hold_id,
        opened_by=r.opened_by,
        closed_by=r.closed_by,
        closed_at=iso(r.closed_at) if r.closed_at else None,
        close_reason=r.close_reason,
        exports=list(r.exports or []),
    )


def _kinds(st: AppState) -> dict[str, str]:
    return {**{c.id: "camera" for c in st.cfg.cameras}, **{x.id: "line" for x in st.cfg.lines}}


def _get(st: AppState, req_id: int) -> SubjectRequest:
    with st.vault.sessions() as s:
        r = s.get(SubjectRequest, req_id)
    if r is None:
        raise HTTPException(404, f"no subject request {req_id}")
    return r


@router.post("", status_code=201, response_model=SubjectRequestOut, responses=ERRORS)
@in_pool("long")
def open_request(
    request: Request, body: SubjectRequestIn, who: Principal = Depends(require("dpo"))
) -> SubjectRequestOut:
    """Open a subject access request: places a legal hold on its sources and range until answered."""
    st = state(request)
    a, b = parse_range(body.start, body.end, MAX_REQUEST_RANGE)
    kinds = _kinds(st)
    srcs = sorted(set(body.sources))
    unknown = [x for x in srcs if x not in kinds]
    if unknown:
        raise HTTPException(400, f"unknown source(s) {', '.join(unknown)}: not cameras or call lines")
    now = st.vault.clock()
    with st.vault.sessions.begin() as s:
        r = SubjectRequest(
            subject=body.subject.strip(),
            identity_verified=body.identity_verified,
            identity_note=body.identity_note.strip(),
            identity_verified_by=who.name if body.identity_verified else None,
            identity_verified_at=now if body.identity_verified else None,
            sources=srcs,
            start=a,
            end=b,
            received_at=now,
            deadline=now + timedelta(days=st.cfg.api.subject_request_days),
            state="open",
            opened_by=who.name,
            exports=[],
        )
        s.add(r)
        s.flush()
        h = holds.add_hold(
            s,
            st.vault.access_log,
            actor=who.name,
            role=who.role,
            reason=f"{purpose_of(r.id)}: footage kept until the request is answered",
            now=now,
            sources=srcs,
            start=a,
            end=b,
            incident=f"subject-request:{r.id}",
            known_sources=set(kinds),
        )
        r.hold_id = h.id
    event(
        log,
        "subject_request.opened",
        request=r.id,
        sources=",".join(srcs),
        user=who.name,
        deadline=iso(r.deadline),
    )
    return out(r, now)


@router.get("", response_model=list[SubjectRequestOut], responses=ERRORS)
def list_requests(request: Request, who: Principal = Depends(require("dpo"))) -> list[SubjectRequestOut]:
    """All subject requests, newest first, with their deadlines."""
    st = state(request)
    now = st.vault.clock()
    with st.vault.sessions() as s:
        rows = list(s.scalars(select(SubjectRequest).order_by(SubjectRequest.id.desc()).limit(1000)))
    return [out(r, now) for r in rows]


@router.get("/{request_id}", response_model=SubjectRequestOut, responses=ERRORS)
def get_request(
    request: Request, request_id: RequestId, who: Principal = Depends(require("dpo"))
) -> SubjectRequestOut:
    st = state(request)
    return out(_get(st, request_id), st.vault.clock())


@router.post("/{request_id}/identity", response_model=SubjectRequestOut, responses=ERRORS)
def verify_identity(
    request: Request, request_id: RequestId, body: IdentityIn, who: Principal = Depends(require("dpo"))
) -> SubjectRequestOut:
    """Record that the requester's identity was verified, and how: exports need it first."""
    st = state(request)
    _get(st, request_id)
    with st.vault.sessions.begin() as s:
        r = s.get(SubjectRequest, request_id)
        assert r is not None
        r.identity_verified, r.identity_note = True, body.note.strip()
        r.identity_verified_by, r.identity_verified_at = who.name, st.vault.clock()
    event(log, "subject_request.identity_verified", request=request_id, user=who.name)
    return out(r, st.vault.clock())


@router.post("/{request_id}/close", response_model=SubjectRequestOut, responses=ERRORS)
@in_pool("long")
def close_request(
    request: Request, request_id: RequestId, body: CloseIn, who: Principal = Depends(require("dpo"))
) -> SubjectRequestOut:
    """Mark the request answered and release its legal hold, with a reason (logged)."""
    st = state(request)
    if _get(st, request_id).state != "open":
        raise HTTPException(409, f"subject request {request_id} is already answered")
    now = st.vault.clock()
    with st.vault.sessions.begin() as s:
        r = s.get(SubjectRequest, request_id)
        assert r is not None
        if r.hold_id is not None:
            holds.release_hold(
                s,
                st.vault.access_log,
                r.hold_id,
                actor=who.name,
                role=who.role,
                reason=accesslog.bounded(f"{purpose_of(r.id)} answered: {body.reason}"),
                now=now,
                allowed=lambda _actor, _perm: who.role == "dpo",
            )
        r.state, r.closed_by, r.closed_at, r.close_reason = "answered", who.name, now, body.reason
    event(log, "subject_request.answered", request=request_id, user=who.name, reason=body.reason)
    return out(r, now)


@router.post(
    "/{request_id}/export",
    response_class=StreamingResponse,
    responses={
        **EXPORT_ERRORS,
        200: {"content": {"application/zip": {}}, "description": "the signed export zip"},
    },
)
@in_pool("long")
def export(
    request: Request, request_id: RequestId, body: ExportIn, who: Principal = Depends(require("dpo"))
) -> StreamingResponse:
    """The subject's footage with everyone else irreversibly blurred, calls as recorded; signed zip.

    Slow by nature: every frame is decoded, redacted and re-encoded (about real time or faster
    at 1080p on one core); keep the range to what the subject asked about.
    """
    st = state(request)
    req = _get(st, request_id)
    if req.state != "open":
        raise HTTPException(409, f"subject request {request_id} is answered: its hold is released")
    if not req.identity_verified:
        raise HTTPException(409, "verify the requester's identity first (POST .../identity with how)")
    a, b = req.start, req.end
    if body.start is not None or body.end is not None:
        a, b = parse_range(body.start or iso(req.start), body.end or iso(req.end), MAX_REQUEST_RANGE)
        if a < req.start or b > req.end:
            raise HTTPException(400, "export range must lie within the request's range")
    if b - a > MAX_EXPORT_RANGE:
        raise HTTPException(
            400, f"export at most {MAX_EXPORT_RANGE.days} days at a time (pass start and end)"
        )
    srcs = body.sources or list(req.sources)
    outside = [x for x in srcs if x not in req.sources]
    if outside:
        raise HTTPException(400, f"source(s) {', '.join(outside)} are not part of this request")
    require_approval(st, who, request, "export", srcs, a, b)
    rect = None
    try:
        if body.subject_rect is not None:
            r0 = body.subject_rect
            rect = Rect(r0.x, r0.y, r0.w, r0.h)
        # Validate mode and rectangle (and its share of the frame) before anything is decoded.
        Redactor(body.blur, rect, detector=lambda _f: [], max_share=st.cfg.api.subject_rect_max_share)
    except RedactError as e:
        raise HTTPException(400, str(e)) from None
    kinds = _kinds(st)
    parts = gather_parts(st.vault, srcs, a, b, kind=lambda x: kinds.get(x, "camera"))
    verified_by = req.identity_verified_by or "(not recorded)"

    def build() -> Built:
        head = manifest_header(
            {
                "id": req.id,
                "subject": req.subject,
                "received": iso(req.received_at),
                "deadline": iso(req.deadline),
                "identity_verified_by": verified_by,
                "identity_verified_at": iso(req.identity_verified_at) if req.identity_verified_at else None,
                "identity_note": req.identity_note,
            },
            {"user": who.name, "role": who.role},
        )
        renderer = part_renderer(
            st.vault, lambda: Redactor(body.blur, rect, max_share=st.cfg.api.subject_rect_max_share)
        )
        try:
            return build_signed(st.vault, parts, renderer, head, "sources", a, b)
        except RedactError as e:
            raise HTTPException(409, f"redaction failed: {e}") from None

    def detail(p: ExportPart) -> dict[str, Any]:
        return {
            "subject_request": req.id,
            "segments": len(p.segments),
            "blur": body.blur if p.kind == "camera" else "none (call audio as recorded)",
            "identity_verified_by": verified_by,
        }

    def note_export() -> None:
        with st.vault.sessions.begin() as s:
            r = s.get(SubjectRequest, req.id)
            assert r is not None
            r.exports = [
                *(r.exports or []),
                {
                    "at": iso(st.vault.clock()),
                    "by": who.name,
                    "identity_verified_by": verified_by,
                    "blur": body.blur,
                    "sources": srcs,
                    "start": iso(a),
                    "end": iso(b),
                },
            ]

    return stream_export(
        st,
        request,
        who,
        purpose_of(req.id),
        parts,
        a,
        b,
        build,
        detail,
        name=f"holdfast-subject-request-{req.id}",
        after_log=note_export,
    )
