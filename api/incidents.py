"""Incidents: opening one places a legal hold on its cameras and range; exports are built per incident."""

from __future__ import annotations

import logging
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi import Path as PathParam
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field

from api import holds_bridge
from api.approvals import require_approval
from api.deps import Principal, require, state
from api.errors import ERRORS, EXPORT_ERRORS
from api.exports import stream_export
from api.footage import camera_for, parse_range
from api.pools import in_pool
from api.state import AppState
from config.model import ID_PATTERN
from vault.exports import evidence
from vault.index.schema import Incident
from vault.ops.logsetup import event
from vault.people.users import add_incident_note
from vault.timeutil import iso

log = logging.getLogger("holdfast.api.incidents")
router = APIRouter(prefix="/api/v1/incidents", tags=["incidents"])
IncidentId = Annotated[int, PathParam(ge=1, le=2**53)]


class IncidentIn(BaseModel):
    site: str = Field(pattern=ID_PATTERN)
    cameras: list[Annotated[str, Field(pattern=ID_PATTERN)]] = Field(min_length=1, max_length=64)
    start: str = Field(max_length=64, examples=["2026-11-21T08:00:00Z"])
    end: str = Field(max_length=64, examples=["2026-11-21T08:10:00Z"])
    description: str = Field(min_length=3, max_length=5000)


class NoteIn(BaseModel):
    text: str = Field(min_length=1, max_length=5000)


class CloseIn(BaseModel):
    reason: str = Field(min_length=3, max_length=2000)


class IncidentOut(BaseModel):
    id: int
    site: str
    cameras: list[str]
    start: str
    end: str
    description: str
    state: str
    hold_id: str | None
    opened_by: str
    opened_at: str
    closed_by: str | None
    closed_at: str | None
    close_reason: str | None
    notes: list[dict[str, Any]]


def out(i: Incident) -> IncidentOut:
    return IncidentOut(
        id=i.id,
        site=i.site,
        cameras=list(i.cameras),
        start=iso(i.start),
        end=iso(i.end),
        description=i.description,
        state=i.state,
        hold_id=i.hold_id,
        opened_by=i.opened_by,
        opened_at=iso(i.opened_at),
        closed_by=i.closed_by,
        closed_at=iso(i.closed_at) if i.closed_at else None,
        close_reason=i.close_reason,
        notes=list(i.notes or []),
    )


def _visible(who: Principal, inc: Incident) -> bool:
    return who.role == "dpo" or (who.role == "security" and inc.site in who.sites)


def _get(st: AppState, who: Principal, incident_id: int) -> Incident:
    with st.vault.sessions() as s:
        inc = s.get(Incident, incident_id)
    if inc is None or not _visible(who, inc):
        raise HTTPException(404, f"no incident {incident_id} visible to you")
    return inc


@router.post("", status_code=201, response_model=IncidentOut, responses=ERRORS)
@in_pool("long")
def open_incident(
    request: Request, body: IncidentIn, who: Principal = Depends(require("security"))
) -> IncidentOut:
    """Open an incident: places a legal hold on its cameras' footage in the range, logged."""
    st = state(request)
    a, b = parse_range(body.start, body.end)
    if body.site not in who.sites:
        raise HTTPException(403, f"you are not assigned to site {body.site!r}")
    cams = sorted(set(body.cameras))
    for c in cams:
        if camera_for(st, who, c).site != body.site:
            raise HTTPException(400, f"camera {c!r} is not at site {body.site!r}")
    now = st.vault.clock()
    with st.vault.sessions.begin() as s:
        inc = Incident(
            site=body.site,
            cameras=cams,
            start=a,
            end=b,
            description=body.description,
            state="open",
            opened_by=who.name,
            opened_at=now,
            notes=[],
        )
        s.add(inc)
        s.flush()
        inc.hold_id = holds_bridge.place(st, s, inc, who)
    event(log, "incident.opened", incident=inc.id, site=inc.site, cameras=",".join(cams), user=who.name)
    return out(inc)


@router.get("", response_model=list[IncidentOut], responses=ERRORS)
def list_incidents(
    request: Request, who: Principal = Depends(require("security", "dpo"))
) -> list[IncidentOut]:
    """Incidents at this user's sites (all sites for the DPO), newest first."""
    st = state(request)
    from sqlalchemy import select

    with st.vault.sessions() as s:
        rows = list(s.scalars(select(Incident).order_by(Incident.id.desc()).limit(1000)))
    return [out(i) for i in rows if _visible(who, i)]


@router.get("/{incident_id}", response_model=IncidentOut, responses=ERRORS)
def get_incident(
    request: Request, incident_id: IncidentId, who: Principal = Depends(require("security", "dpo"))
) -> IncidentOut:
    return out(_get(state(request), who, incident_id))


@router.post("/{incident_id}/notes", response_model=IncidentOut, responses=ERRORS)
def annotate(
    request: Request,
    incident_id: IncidentId,
    body: NoteIn,
    who: Principal = Depends(require("security", "dpo")),
) -> IncidentOut:
    """Add a note to an incident (who and when are recorded with it)."""
    st = state(request)
    _get(st, who, incident_id)
    with st.vault.sessions.begin() as s:
        inc = add_incident_note(s, incident_id, who.name, st.vault.clock(), body.text)
    return out(inc)


@router.post("/{incident_id}/close", response_model=IncidentOut, responses=ERRORS)
@in_pool("long")
def close_incident(
    request: Request, incident_id: IncidentId, body: CloseIn, who: Principal = Depends(require("dpo"))
) -> IncidentOut:
    """Close an incident and release its legal hold: needs the DPO role and a reason; logged."""
    st = state(request)
    inc = _get(st, who, incident_id)
    if inc.state != "open":
        raise HTTPException(409, f"incident {incident_id} is already {inc.state}")
    with st.vault.sessions.begin() as s:
        inc = s.get(Incident, incident_id)
        assert inc is not None
        holds_bridge.release(st, s, inc, who, body.reason)
        inc.state, inc.closed_by, inc.closed_at, inc.close_reason = (
            "closed",
            who.name,
            st.vault.clock(),
            body.reason,
        )
    event(log, "incident.closed", incident=inc.id, user=who.name, reason=body.reason)
    return out(inc)


@router.post(
    "/{incident_id}/export",
    response_class=StreamingResponse,
    responses={**EXPORT_ERRORS, 200: {"content": {"application/zip": {}}, "description": "the evidence zip"}},
)
@in_pool("long")
def export(
    request: Request, incident_id: IncidentId, who: Principal = Depends(require("security"))
) -> StreamingResponse:
    """The incident's evidence: per camera one MP4, gaps listed, signed manifest; one zip."""
    st = state(request)
    inc = _get(st, who, incident_id)
    a, b = inc.start, inc.end
    require_approval(st, who, request, "export", list(inc.cameras), a, b)
    parts = evidence.gather_parts(st.vault, inc.cameras, a, b)
    return stream_export(
        st,
        request,
        who,
        f"incident:{inc.id}",
        parts,
        a,
        b,
        build=lambda: evidence.build_export(
            st.vault,
            parts,
            incident={
                "id": inc.id,
                "site": inc.site,
                "description": inc.description,
                "opened_by": inc.opened_by,
            },
            exporter={"user": who.name, "role": who.role},
            start=a,
            end=b,
        ),
        detail=lambda p: {"incident": inc.id, "segments": len(p.segments)},
        name=f"holdfast-incident-{inc.id}",
    )
