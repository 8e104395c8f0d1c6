"""Footage: sites, cameras and lines, segment search, timeline with gaps; who may see which source.

The bytes themselves are served by api.media (HTTP Range, view tickets, thumbnails) and
api.hls (playlists); both check access with the helpers here (source_for, check_purpose,
load_segment).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated, Any, TypeVar

import orjson
from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field, field_validator

from api import accesslog
from api.deps import Principal, require, state
from api.errors import ERRORS
from api.state import AppState
from config.model import ID_PATTERN, CallLine, Camera
from vault.errors import KeyFileError
from vault.index.queries import (
    LISTING_COLUMNS,
    MAX_SEGMENTS,
    coverage_gaps,
    find_segments,
    first_start,
    last_end,
)
from vault.index.schema import Segment
from vault.media import callmeta
from vault.timeutil import iso, parse_iso
from vault.vault import SegmentNotFound

router = APIRouter(prefix="/api/v1", tags=["footage"])
S = TypeVar("S", bound=Camera | CallLine)

SEGMENT_ID = r"^[A-Za-z0-9_-]{1,64}$"
MAX_RANGE = timedelta(days=2)

SourceId = Annotated[
    str, Query(pattern=ID_PATTERN, description="camera or call-line id", examples=["office-1", "cs-1"])
]
Purpose = Annotated[
    str,
    Query(
        min_length=3, max_length=500, description="why you are viewing: `incident:ID` or a free-text reason"
    ),
]
TimeParam = Annotated[
    str, Query(max_length=64, description="ISO 8601 with offset, e.g. 2026-11-21T08:00:00Z")
]


class CameraOut(BaseModel):
    id: str
    site: str
    retention: str
    enabled: bool


class LineOut(BaseModel):
    id: str
    site: str
    retention: str
    hash_remote: bool


class PauseOut(BaseModel):
    """A stretch of the call left out of the recording (`holdfast call pause`)."""

    #: Seconds into this segment's audio where the left-out stretch would have been.
    offset: float
    start: str | None = None
    end: str | None = None
    seconds: float | None = None


class CallOut(BaseModel):
    """Call metadata of an audio segment (vault.media.callmeta): the remote party as stored."""

    line: str | None = None
    call_id: str | None = None
    agent: str | None = None
    direction: str | None = None
    remote: str | None = None
    remote_hash: str | None = None
    part: int | None = None
    call_start: str | None = None
    call_duration: float | None = None
    pauses: list[PauseOut] = []


class SegmentOut(BaseModel):
    id: str
    source: str
    kind: str
    mime: str
    start: str
    end: str
    duration: float
    cut_short: bool
    bytes: int
    call: CallOut | None = None

    @field_validator("start", "end", mode="before")
    @classmethod
    def _iso(cls, value: Any) -> Any:
        """seg_fields gives the index's datetimes; the API shows them as iso() writes them."""
        return iso(value) if isinstance(value, datetime) else value


class GapOut(BaseModel):
    source: str
    start: str
    end: str
    duration: float
    reason: str


class TimelineOut(BaseModel):
    source: str
    start: str
    end: str
    segments: list[SegmentOut]
    gaps: list[GapOut]


def _num(value: Any, kind: type) -> Any:
    try:
        return kind(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def call_out(s: Any) -> CallOut | None:
    if s.kind != "audio":
        return None
    m = s.meta or {}
    text = {k: (str(m[k]) if m.get(k) is not None else None) for k in CallOut.model_fields}
    pauses = []
    for x in m.get("pauses") or []:
        if isinstance(x, dict) and _num(x.get("offset"), float) is not None:
            pauses.append(
                PauseOut(
                    offset=_num(x.get("offset"), float),
                    start=str(x["start"]) if x.get("start") else None,
                    end=str(x["end"]) if x.get("end") else None,
                    seconds=_num(x.get("seconds"), float),
                )
            )
    return CallOut(
        line=text["line"] or s.source,
        call_id=text["call_id"],
        agent=text["agent"],
        direction=text["direction"],
        remote=text["remote"],
        remote_hash=text["remote_hash"],
        part=_num(m.get("part"), int),
        call_start=text["call_start"] or iso(s.start),
        call_duration=_num(m.get("call_duration"), float),
        pauses=pauses,
    )


def seg_fields(s: Any) -> dict[str, Any]:
    """A listed segment (a Segment, or a row of LISTING_COLUMNS) as the API shows it: SegmentOut's
    fields in its order. `start` and `end` stay the index's aware UTC datetimes: listing_json
    writes them as iso() would (and SegmentOut converts them), at a fraction of the cost."""
    return {
        "id": s.id,
        "source": s.source,
        "kind": s.kind,
        "mime": content_type_for(s),
        "start": s.start,
        "end": s.end,
        "duration": s.duration,
        "cut_short": s.cut_short,
        "bytes": s.plaintext_bytes,
        "call": call_out(s),
    }


def _model_fields(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


def listing_json(value: Any) -> Response:
    """A listing answered as JSON written by orjson from seg_fields' dicts: the route's response
    model documents it, and building a model per row to serialise it cost more than the query.
    Datetimes must be UTC (the index's are): orjson writes them as iso() does, `Z` included."""
    body = orjson.dumps(value, default=_model_fields, option=orjson.OPT_UTC_Z)
    return Response(body, media_type="application/json")


#: Times outside these years are refused: footage is not older than 1970, and arithmetic on
#: times near year 9999 (deadlines, ranges) would overflow.
YEARS = (1970, 9000)


def parse_time(value: str, what: str) -> datetime:
    try:
        t = parse_iso(value, what)
    except ValueError as e:
        raise HTTPException(400, str(e)) from None
    if not YEARS[0] <= t.year < YEARS[1]:
        raise HTTPException(400, f"{what}: {value[:64]!r} is outside the years {YEARS[0]}-{YEARS[1] - 1}")
    return t


def parse_range(start: str, end: str, limit: timedelta = MAX_RANGE) -> tuple[datetime, datetime]:
    a, b = parse_time(start, "start"), parse_time(end, "end")
    if b <= a:
        raise HTTPException(400, f"end ({iso(b)}) must be after start ({iso(a)})")
    if b - a > limit:
        raise HTTPException(400, f"time range too long: at most {limit.days} days per request")
    return a, b


def _visible(who: Principal, src: S | None, unknown: str) -> S:
    """`src` if this user may see its site; 404 (`unknown`) when there is none, 403 for other sites."""
    if src is None:
        raise HTTPException(404, unknown)
    if who.barred_from(src.site):
        raise HTTPException(403, f"you are not assigned to site {src.site!r}")
    return src


def camera_for(st: AppState, who: Principal, camera_id: str) -> Camera:
    """The camera, if this user may see its site; 404 for unknown ids, 403 for other sites."""
    cam = next((c for c in st.cfg.cameras if c.id == camera_id), None)
    return _visible(who, cam, f"no camera {camera_id!r}")


def source_for(st: AppState, who: Principal, source_id: str) -> Camera | CallLine:
    """A camera or call line, if this user may see its site; 404 unknown, 403 other sites.

    The DPO reaches footage only through a subject request (api.subjects), never here.
    """
    src: Camera | CallLine | None = next((c for c in st.cfg.cameras if c.id == source_id), None)
    if src is None:
        src = next((x for x in st.cfg.lines if x.id == source_id), None)
    return _visible(who, src, f"no camera or call line {source_id!r}")


#: Letters that look like the Latin ones of "incident" (Cyrillic, Greek, Armenian, small capitals);
#: NFKC already folds full-width and compatibility forms.
_LOOKALIKES = str.maketrans(
    {
        "і": "i", "ı": "i", "ɩ": "i", "ι": "i", "ӏ": "i", "ɪ": "i", "í": "i", "ì": "i",
        "ո": "n", "ռ": "n", "ɴ": "n", "п": "n",
        "с": "c", "ϲ": "c", "ᴄ": "c", "ç": "c",
        "ԁ": "d", "ɗ": "d", "ᑯ": "d",
        "е": "e", "ҽ": "e", "ε": "e", "é": "e", "è": "e",
        "т": "t", "τ": "t", "ţ": "t",
    }
)  # fmt: skip
_NAMES_INCIDENT = re.compile(r"incident\W{0,3}\d")
_EXACT_INCIDENT = re.compile(r"incident:([1-9][0-9]{0,11})")


def purpose_problem(purpose: str) -> str | None:
    """Why `purpose` cannot be a purpose (None if it can): length and invisible characters."""
    if len(purpose) > accesslog.MAX_PURPOSE:
        return f"purpose is {len(purpose)} characters; at most {accesslog.MAX_PURPOSE}"
    bad = next(
        (c for c in purpose if unicodedata.category(c) in ("Cc", "Cf", "Co", "Cs", "Cn", "Zl", "Zp")), None
    )
    if bad is not None:
        return f"purpose contains the control or invisible character U+{ord(bad):04X}: write plain text"
    return None


def check_purpose(st: AppState, who: Principal, purpose: str) -> str:
    """A purpose as the access log keeps it: plain text of at most 500 characters, and if it names an
    incident, exactly `incident:N` (lowercase ASCII) of an incident this user can see.

    Whether it names one is judged on its NFKC form, case-folded, with lookalike letters mapped
    to Latin, so `Incident:9`, `ｉncident:９` or a Cyrillic `і` do not pass for incident 9 as free text.
    """
    problem = purpose_problem(purpose)
    if problem is not None:
        raise HTTPException(400, problem)
    purpose = purpose.strip()
    if len(purpose) < 3:
        raise HTTPException(422, "purpose is required: an incident (incident:ID) or a reason")
    skeleton = unicodedata.normalize("NFKC", purpose).casefold().translate(_LOOKALIKES)
    if not _NAMES_INCIDENT.search(skeleton):
        return purpose
    m = _EXACT_INCIDENT.fullmatch(purpose)
    if m is None:
        raise HTTPException(
            400,
            "a purpose that names an incident must be exactly incident:N (lowercase, ASCII digits, "
            "nothing else); for another reason, do not mention an incident number",
        )
    from vault.index.schema import Incident

    with st.vault.sessions() as s:
        inc = s.get(Incident, int(m.group(1)))
        if inc is None or who.barred_from(inc.site):
            raise HTTPException(
                400, f"purpose names incident {m.group(1)}, which you cannot see or does not exist"
            )
    return purpose


def load_segment(st: AppState, who: Principal, segment_id: str) -> Segment:
    if not re.match(SEGMENT_ID, segment_id):
        raise HTTPException(400, f"malformed segment id {segment_id[:80]!r}")
    with st.vault.sessions() as s:
        try:
            seg = st.vault.get_segment(s, segment_id)
        except SegmentNotFound:
            raise HTTPException(404, f"no segment {segment_id!r}") from None
        s.expunge(seg)
    source_for(st, who, seg.source)
    return seg


# -- listing ------------------------------------------------------------------------------


class SiteOut(BaseModel):
    id: str
    name: str
    timezone: str = Field(description="IANA zone: the page shows and reads every time in it")


@router.get("/sites", response_model=list[SiteOut], responses=ERRORS)
def list_sites(
    request: Request, who: Principal = Depends(require("security", "auditor", "dpo", "admin"))
) -> list[SiteOut]:
    """Sites this user works at (security: its sites; other roles: all), with their time zones."""
    st = state(request)
    return [
        SiteOut(id=x.id, name=x.name, timezone=x.timezone) for x in st.cfg.sites if not who.barred_from(x.id)
    ]


@dataclass(frozen=True)
class SiteScope:
    """Who lists cameras or lines, and the one site asked for (None: every site they may see)."""

    who: Principal
    site: str | None

    def visible(self, sources: list[S]) -> list[S]:
        return [x for x in sources if not self.who.barred_from(x.site) and self.site in (None, x.site)]


async def site_scope(
    site: Annotated[str | None, Query(pattern=ID_PATTERN)] = None,
    who: Principal = Depends(require("security", "admin")),
) -> SiteScope:
    return SiteScope(who, site)


@router.get("/cameras", response_model=list[CameraOut], responses=ERRORS)
def list_cameras(request: Request, scope: SiteScope = Depends(site_scope)) -> list[CameraOut]:
    """Cameras this user may see (a security user: only its sites)."""
    cameras = scope.visible(state(request).cfg.cameras)
    return [CameraOut(id=c.id, site=c.site, retention=c.retention, enabled=c.enabled) for c in cameras]


@router.get("/lines", response_model=list[LineOut], responses=ERRORS)
def list_lines(request: Request, scope: SiteScope = Depends(site_scope)) -> list[LineOut]:
    """Call lines this user may see (a security user: only its sites)."""
    lines = scope.visible(state(request).cfg.lines)
    return [LineOut(id=x.id, site=x.site, retention=x.retention, hash_remote=x.hash_remote) for x in lines]


CallText = Annotated[str | None, Query(min_length=1, max_length=200)]


def call_filters(
    st: AppState,
    src: Camera | CallLine,
    agent: str | None,
    direction: str | None,
    call_id: str | None,
    remote: str | None,
) -> dict[str, str]:
    """Meta filters for a call search; the remote party is hashed as the recorder stored it.

    On a `hash_remote` line the index holds only `remote_hash`, so the number asked for is
    hashed with the same keyed hash (vault.media.callmeta) and compared: the number itself is
    never stored nor logged.
    """
    meta = {k: v for k, v in (("agent", agent), ("direction", direction), ("call_id", call_id)) if v}
    if not meta and not remote:
        return {}
    if not isinstance(src, CallLine):
        raise HTTPException(
            400, f"{src.id} is a camera: agent, direction, call_id and remote filter call lines"
        )
    if direction is not None and direction not in callmeta.DIRECTIONS:
        raise HTTPException(400, f"direction must be one of {', '.join(callmeta.DIRECTIONS)}")
    if remote:
        if src.hash_remote:
            try:
                key = callmeta.load_remote_hash_key(st.cfg.keys.dir)
            except KeyFileError as e:
                raise HTTPException(409, f"cannot search by remote party on {src.id}: {e}") from None
            meta["remote_hash"] = callmeta.hash_remote(key, remote)
        else:
            meta["remote"] = remote.strip()
    return meta


@router.get("/segments", response_model=list[SegmentOut], responses=ERRORS)
def search_segments(
    request: Request,
    source: SourceId,
    start: TimeParam,
    end: TimeParam,
    limit: Annotated[int, Query(ge=1, le=MAX_SEGMENTS)] = 1000,
    agent: CallText = None,
    direction: Annotated[str | None, Query(pattern="^(in|out)$")] = None,
    call_id: CallText = None,
    remote: Annotated[
        str | None, Query(min_length=1, max_length=64, description="remote party number")
    ] = None,
    who: Principal = Depends(require("security")),
) -> Response:
    """Segments of one camera or call line overlapping [start, end), oldest first.

    On a call line, `agent`, `direction`, `call_id` and `remote` narrow the search (all must match).
    """
    st = state(request)
    src = source_for(st, who, source)
    a, b = parse_range(start, end)
    meta = call_filters(st, src, agent, direction, call_id, remote)
    with st.vault.reads() as s:
        found = find_segments(s, source, a, b, limit, meta=meta, columns=LISTING_COLUMNS)
    return listing_json([seg_fields(x) for x in found])


class ExtentOut(BaseModel):
    source: str
    first: str | None = Field(description="start of the oldest segment held; null: nothing recorded")
    last: str | None = Field(description="end of the newest segment")


@router.get("/extent", response_model=ExtentOut, responses=ERRORS)
def extent(request: Request, source: SourceId, who: Principal = Depends(require("security"))) -> ExtentOut:
    """The range that holds recordings of a source: where the page's timeline opens."""
    st = state(request)
    source_for(st, who, source)
    with st.vault.sessions() as s:
        a, b = first_start(s, source), last_end(s, source)
    return ExtentOut(source=source, first=iso(a) if a else None, last=iso(b) if b else None)


@router.get("/timeline", response_model=TimelineOut, responses=ERRORS)
def timeline(
    request: Request,
    source: SourceId,
    start: TimeParam,
    end: TimeParam,
    who: Principal = Depends(require("security")),
) -> Response:
    """What was recorded in a range and what was not, with the reason for each gap."""
    st = state(request)
    source_for(st, who, source)
    a, b = parse_range(start, end)
    with st.vault.sessions() as s:
        segs = find_segments(s, source, a, b, columns=LISTING_COLUMNS)
        gaps = coverage_gaps(s, source, segs, a, b)
    return listing_json(
        {
            "source": source,
            "start": iso(a),
            "end": iso(b),
            "segments": [seg_fields(x) for x in segs],
            "gaps": gaps,
        }
    )


_AUDIO_MIME = {"ogg": "audio/ogg", "flac": "audio/flac", "wav": "audio/wav", "mp3": "audio/mpeg"}


def content_type_for(seg: Any) -> str:
    """The recorder's `meta.mime` when present (calls: `audio/ogg; codecs=opus`), else from the format."""
    m = seg.meta or {}
    mime = m.get("mime")
    if isinstance(mime, str) and re.fullmatch(r"(audio|video)/[a-z0-9.+-]+(; ?codecs=[a-z0-9.,\"-]+)?", mime):
        return mime
    if seg.kind == "audio":
        fmt = str(m.get("format", ""))
        return next((v for k, v in _AUDIO_MIME.items() if k in fmt), "audio/mp4")
    return "video/mp4"
