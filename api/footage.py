"""Footage: cameras, segment search, timeline with gaps, media with HTTP Range, HLS, thumbnails.

Reads decrypt only the chunks a byte range touches (SegmentReader.iter_range); plaintext is
streamed to the client and never written to disk. Thumbnails are made by ffmpeg reading the
segment on a pipe and writing the JPEG to a pipe.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request
from fastapi.responses import Response, StreamingResponse
from pydantic import BaseModel, Field, TypeAdapter
from sqlalchemy import select
from sqlalchemy.orm import Session, load_only

from api import accesslog, hls
from api.approvals import require_approval
from api.deps import Principal, require, state
from api.errors import ERRORS
from api.state import AppState
from config.model import ID_PATTERN, CallLine, Camera
from vault import callmeta, media
from vault.db import Segment
from vault.errors import KeyFileError
from vault.index import gaps_in_range
from vault.seal import SegmentReader
from vault.timeutil import iso, parse_iso
from vault.vault import SegmentNotFound

router = APIRouter(prefix="/api/v1", tags=["footage"])

SEGMENT_ID = r"^[A-Za-z0-9_-]{1,64}$"
MAX_RANGE = timedelta(days=2)
MAX_SEGMENTS = 5000
#: Holes between consecutive segments shorter than this are encoder jitter, not gaps.
GAP_TOLERANCE = 1.0
#: How many segments starting before a range are checked for overlapping into it.
PRECEDING = 8

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
    """Call metadata of an audio segment (vault.callmeta): the remote party as stored."""

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


def find_segments(
    session: Session,
    source: str,
    a: datetime,
    b: datetime,
    limit: int = MAX_SEGMENTS,
    meta: dict[str, str] | None = None,
    columns: Sequence[Any] = (),
) -> list[Segment]:
    """Segments of `source` overlapping [a, b), oldest first, in two index range scans.

    A plain `start < b AND end > a` filter reads every earlier row of the source (millions at
    scale). Here: the few segments starting just before `a` (a camera's segments follow one
    another, so only the last ones can reach into the range) plus those starting in [a, b),
    both served by ix_segments_source_start. `meta` filters on top-level meta fields (calls:
    agent, direction, call_id, remote/remote_hash), as vault.index.segments_in_range does.
    `columns` loads only those (SEGMENT_OUT_COLUMNS: the scans then read the covering index alone).
    """
    conds = [Segment.meta[k].as_string() == v for k, v in (meta or {}).items()]
    only = [load_only(*columns)] if columns else []
    before = list(
        session.scalars(
            select(Segment)
            .options(*only)
            .where(Segment.source == source, Segment.start < a, *conds)
            .order_by(Segment.start.desc())
            .limit(PRECEDING)
        )
    )
    inside = list(
        session.scalars(
            select(Segment)
            .options(*only)
            .where(Segment.source == source, Segment.start >= a, Segment.start < b, *conds)
            .order_by(Segment.start)
            .limit(limit)
        )
    )
    return ([x for x in reversed(before) if x.end > a] + inside)[:limit]


def exportable_segments(session: Session, source: str, a: datetime, b: datetime) -> list[Segment]:
    """Segments of [a, b) that can still be opened (key not shredded), detached from the session
    so an export can stream them after it closes."""
    segs = [x for x in find_segments(session, source, a, b) if x.envelope is not None]
    for x in segs:
        session.expunge(x)
    return segs


def _num(value: Any, kind: type) -> Any:
    try:
        return kind(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def call_out(s: Segment) -> CallOut | None:
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


#: What seg_out reads: all in ix_segments_source_start, so search and timeline never visit a row.
SEGMENT_OUT_COLUMNS = (
    Segment.id,
    Segment.source,
    Segment.kind,
    Segment.meta,
    Segment.start,
    Segment.end,
    Segment.duration,
    Segment.cut_short,
    Segment.plaintext_bytes,
)


SEGMENTS_JSON = TypeAdapter(list[SegmentOut])


def seg_out(s: Segment) -> SegmentOut:
    return SegmentOut(
        id=s.id,
        source=s.source,
        kind=s.kind,
        mime=content_type_for(s),
        call=call_out(s),
        start=iso(s.start),
        end=iso(s.end),
        duration=s.duration,
        cut_short=s.cut_short,
        bytes=s.plaintext_bytes,
    )


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


def parse_range(start: str, end: str) -> tuple[datetime, datetime]:
    a, b = parse_time(start, "start"), parse_time(end, "end")
    if b <= a:
        raise HTTPException(400, f"end ({iso(b)}) must be after start ({iso(a)})")
    if b - a > MAX_RANGE:
        raise HTTPException(400, f"time range too long: at most {MAX_RANGE.days} days per request")
    return a, b


def camera_for(st: AppState, who: Principal, camera_id: str) -> Camera:
    """The camera, if this user may see its site; 404 for unknown ids, 403 for other sites."""
    cam = next((c for c in st.cfg.cameras if c.id == camera_id), None)
    if cam is None:
        raise HTTPException(404, f"no camera {camera_id!r}")
    if who.barred_from(cam.site):
        raise HTTPException(403, f"you are not assigned to site {cam.site!r}")
    return cam


def source_for(st: AppState, who: Principal, source_id: str) -> Camera | CallLine:
    """A camera or call line, if this user may see its site; 404 unknown, 403 other sites.

    The DPO reaches footage only through a subject request (api.subjects), never here.
    """
    src: Camera | CallLine | None = next((c for c in st.cfg.cameras if c.id == source_id), None)
    if src is None:
        src = next((x for x in st.cfg.lines if x.id == source_id), None)
    if src is None:
        raise HTTPException(404, f"no camera or call line {source_id!r}")
    if who.barred_from(src.site):
        raise HTTPException(403, f"you are not assigned to site {src.site!r}")
    return src


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
    from vault.users import Incident

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


@router.get("/cameras", response_model=list[CameraOut], responses=ERRORS)
def list_cameras(
    request: Request,
    site: Annotated[str | None, Query(pattern=ID_PATTERN)] = None,
    who: Principal = Depends(require("security", "admin")),
) -> list[CameraOut]:
    """Cameras this user may see (a security user: only its sites)."""
    st = state(request)
    return [
        CameraOut(id=c.id, site=c.site, retention=c.retention, enabled=c.enabled)
        for c in st.cfg.cameras
        if not who.barred_from(c.site) and (site is None or c.site == site)
    ]


@router.get("/lines", response_model=list[LineOut], responses=ERRORS)
def list_lines(
    request: Request,
    site: Annotated[str | None, Query(pattern=ID_PATTERN)] = None,
    who: Principal = Depends(require("security", "admin")),
) -> list[LineOut]:
    """Call lines this user may see (a security user: only its sites)."""
    st = state(request)
    return [
        LineOut(id=x.id, site=x.site, retention=x.retention, hash_remote=x.hash_remote)
        for x in st.cfg.lines
        if not who.barred_from(x.site) and (site is None or x.site == site)
    ]


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
    hashed with the same keyed hash (vault.callmeta) and compared: the number itself is
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
    with st.vault.sessions() as s:
        found = find_segments(s, source, a, b, limit, meta=meta, columns=SEGMENT_OUT_COLUMNS)
        out = [seg_out(x) for x in found]
    # Serialised once, by pydantic-core, from models just built (FastAPI would validate them again).
    return Response(SEGMENTS_JSON.dump_json(out), media_type="application/json")


def first_start(session: Session, source: str) -> datetime | None:
    """When the source's oldest indexed segment starts (one index seek)."""
    return session.scalar(
        select(Segment.start).where(Segment.source == source).order_by(Segment.start).limit(1)
    )


def last_end(session: Session, source: str) -> datetime | None:
    """Where the source's newest indexed segment ends (the last few by start, one index seek)."""
    ends = session.scalars(
        select(Segment.end).where(Segment.source == source).order_by(Segment.start.desc()).limit(PRECEDING)
    )
    return max(ends, default=None)


def timeline_gaps(st: AppState, source: str, segs: list[Segment], a: datetime, b: datetime) -> list[GapOut]:
    """Recorded gaps (with the recorder's reason) plus any other hole in coverage, explained as unknown.

    Time before the source's first recording still held is not a gap: nothing was expected then
    (the camera did not exist yet, or its older footage was purged as promised).
    """
    with st.vault.sessions() as s:
        recorded = gaps_in_range(s, source, a, b)
        first = first_start(s, source)
    if first is None:
        first = b
    if first > a:
        recorded = [g for g in recorded if g.end > first]
        a = min(first, b)
    gaps = [
        GapOut(
            source=source,
            start=iso(max(g.start, a)),
            end=iso(min(g.end, b)),
            duration=(min(g.end, b) - max(g.start, a)).total_seconds(),
            reason=g.reason,
        )
        for g in recorded
    ]
    covered = [(g.start, g.end) for g in recorded]
    cursor = a
    holes: list[tuple[datetime, datetime]] = []
    for seg in segs:
        if (seg.start - cursor).total_seconds() > GAP_TOLERANCE:
            holes.append((cursor, seg.start))
        cursor = max(cursor, seg.end)
    if (b - cursor).total_seconds() > GAP_TOLERANCE:
        holes.append((cursor, b))
    for h0, h1 in holes:
        if any(
            c0 <= h0 + timedelta(seconds=GAP_TOLERANCE) and c1 >= h1 - timedelta(seconds=GAP_TOLERANCE)
            for c0, c1 in covered
        ):
            continue
        gaps.append(
            GapOut(
                source=source,
                start=iso(h0),
                end=iso(h1),
                duration=(h1 - h0).total_seconds(),
                reason="no recording (reason not recorded)",
            )
        )
    gaps.sort(key=lambda g: g.start)
    return gaps


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
) -> TimelineOut:
    """What was recorded in a range and what was not, with the reason for each gap."""
    st = state(request)
    source_for(st, who, source)
    a, b = parse_range(start, end)
    with st.vault.sessions() as s:
        segs = find_segments(s, source, a, b, columns=SEGMENT_OUT_COLUMNS)
        out = [seg_out(x) for x in segs]
    return TimelineOut(
        source=source,
        start=iso(a),
        end=iso(b),
        segments=out,
        gaps=timeline_gaps(st, source, segs, a, b),
    )


# -- bytes -----------------------------------------------------------------------------------

#: At most 15 digits a position (a petabyte): longer numbers are not offsets, and Python refuses
#: to convert numbers over 4,300 digits at all.
_RANGE_RE = re.compile(r"^bytes=([0-9]{0,15})-([0-9]{0,15})$")
MAX_RANGE_HEADER = 100


def parse_byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """One `bytes=` range → (offset, length); None for the whole body. Clear 4xx otherwise."""
    if header is None:
        return None
    m = _RANGE_RE.match(header.strip()) if len(header) <= MAX_RANGE_HEADER else None
    if not m or (m.group(1) == "" and m.group(2) == ""):
        raise HTTPException(
            400,
            f"malformed Range header {header[:40]!r}{'...' if len(header) > 40 else ''}: expected "
            "bytes=START-END (one range, numbers of at most 15 digits)",
        )
    first, last = m.group(1), m.group(2)
    if first == "":
        n = int(last)
        if n == 0:
            raise HTTPException(416, "empty suffix range", headers={"Content-Range": f"bytes */{size}"})
        n = min(n, size)
        return size - n, n
    a = int(first)
    b = int(last) if last else size - 1
    if a >= size:
        raise HTTPException(
            416,
            f"range starts at byte {a}, past the end of the {size}-byte segment",
            headers={"Content-Range": f"bytes */{size}"},
        )
    if b < a:
        raise HTTPException(400, f"malformed Range {header[:40]!r}: last byte before first byte")
    b = min(b, size - 1)
    return a, b - a + 1


def _stream(
    reader_f: Any, reader: SegmentReader, offset: int, length: int, patches: list[tuple[int, bytes]]
) -> Iterator[bytes]:
    try:
        pieces = reader.iter_range(offset, length)
        yield from hls.patch_stream(pieces, offset, patches) if patches else pieces
    finally:
        reader_f.close()


def media_response(
    st: AppState,
    seg: Segment,
    range_header: str | None,
    content_type: str,
    patches: list[tuple[int, bytes]] | None = None,
    before_send: Callable[[str], object] | None = None,
) -> Response:
    """The segment's bytes (or one range), with `patches` (offset, bytes) laid over the plaintext.

    `before_send(range)` runs once the range is known to be servable and before any byte leaves:
    the view's access-log entry, with the range it serves."""
    f = st.vault.store.open(seg.storage_key, seg.storage_version, seg.stored_bytes)
    try:
        reader = SegmentReader(f, st.vault.keyring, envelope=seg.envelope, expected_id=seg.id)
        size = reader.plaintext_size
        rng = parse_byte_range(range_header, size)
        if before_send is not None:
            before_send("all" if rng is None else f"bytes={rng[0]}-{rng[0] + rng[1] - 1}")
    except BaseException:
        f.close()
        raise
    headers = {"Accept-Ranges": "bytes", "Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}
    if rng is None:
        headers["Content-Length"] = str(size)
        return StreamingResponse(
            _stream(f, reader, 0, size, patches or []), 200, headers=headers, media_type=content_type
        )
    off, n = rng
    headers["Content-Length"] = str(n)
    headers["Content-Range"] = f"bytes {off}-{off + n - 1}/{size}"
    return StreamingResponse(
        _stream(f, reader, off, n, patches or []), 206, headers=headers, media_type=content_type
    )


_AUDIO_MIME = {"ogg": "audio/ogg", "flac": "audio/flac", "wav": "audio/wav", "mp3": "audio/mpeg"}


def content_type_for(seg: Segment) -> str:
    """The recorder's `meta.mime` when present (calls: `audio/ogg; codecs=opus`), else from the format."""
    m = seg.meta or {}
    mime = m.get("mime")
    if isinstance(mime, str) and re.fullmatch(r"(audio|video)/[a-z0-9.+-]+(; ?codecs=[a-z0-9.,\"-]+)?", mime):
        return mime
    if seg.kind == "audio":
        fmt = str(m.get("format", ""))
        return next((v for k, v in _AUDIO_MIME.items() if k in fmt), "audio/mp4")
    return "video/mp4"


_MEDIA_TYPES = {
    "video/mp4": {},
    "audio/ogg": {},
    "audio/flac": {},
    "audio/wav": {},
    "audio/mpeg": {},
    "audio/mp4": {},
}
MEDIA_RESPONSES: dict[int | str, dict[str, Any]] = {
    **ERRORS,
    200: {"content": _MEDIA_TYPES, "description": "the whole segment"},
    206: {"content": _MEDIA_TYPES, "description": "the requested byte range"},
    416: ERRORS[400],
}


@router.get("/segments/{segment_id}/media", response_class=Response, responses=MEDIA_RESPONSES)
def segment_media(
    request: Request,
    segment_id: str,
    purpose: Purpose,
    who: Principal = Depends(require("security")),
) -> Response:
    """The segment's plaintext bytes exactly as recorded; HTTP Range gives 206 and decrypts only touched chunks."""
    st = state(request)
    seg = load_segment(st, who, segment_id)
    purpose = check_purpose(st, who, purpose)
    require_approval(st, who, request, "view", [seg.source], seg.start, seg.end)

    def log_view(served: str) -> None:
        accesslog.record(
            st,
            who,
            "view",
            purpose,
            source=seg.source,
            start=seg.start,
            end=seg.end,
            request=request,
            segment=seg.id,
            range=served,
        )

    return media_response(st, seg, request.headers.get("range"), content_type_for(seg), before_send=log_view)


class ViewIn(BaseModel):
    purpose: str = Field(min_length=3, max_length=500, description="`incident:ID` or a free-text reason")


class ViewOut(BaseModel):
    segment: str
    url: str
    mime: str
    expires: str


@router.post("/segments/{segment_id}/views", status_code=201, response_model=ViewOut, responses=ERRORS)
def open_view(
    request: Request, segment_id: str, body: ViewIn, who: Principal = Depends(require("security"))
) -> ViewOut:
    """Open one logged view of a segment (a call, for the page's `<audio>`): one access-log entry.

    A media element fetches a file in several Range requests; logging each would turn one
    listening into many entries. The view's ticket URL serves the same bytes as `/media`, for
    this user only, for an hour, without further entries (as the HLS playlist does for video).
    """
    st = state(request)
    seg = load_segment(st, who, segment_id)
    purpose = check_purpose(st, who, body.purpose)
    require_approval(st, who, request, "view", [seg.source], seg.start, seg.end)
    accesslog.record(
        st,
        who,
        "view",
        purpose,
        source=seg.source,
        start=seg.start,
        end=seg.end,
        request=request,
        segment=seg.id,
        via="ticket",
    )
    ticket, expires = st.issue_ticket(who.user_id, seg.source, {seg.id}, st.vault.clock())
    return ViewOut(
        segment=seg.id,
        url=f"/api/v1/play/{ticket}/{seg.id}",
        mime=content_type_for(seg),
        expires=iso(expires),
    )


# -- HLS -------------------------------------------------------------------------------------


@router.get(
    "/cameras/{camera_id}/playlist.m3u8",
    response_class=Response,
    responses={**ERRORS, 200: {"content": {"application/vnd.apple.mpegurl": {}}}},
)
def playlist(
    request: Request,
    camera_id: str,
    start: TimeParam,
    end: TimeParam,
    purpose: Purpose,
    who: Principal = Depends(require("security")),
) -> Response:
    """An HLS VOD playlist for a time range: one access-log entry covers the whole view.

    Segments play as one timeline (api.hls rewrites their decode times as they are served), so
    a run of back-to-back segments with the same stream parameters shares one EXT-X-MAP; a gap
    or a change of parameters starts a new run after an EXT-X-DISCONTINUITY, with a
    `#HOLDFAST-GAP` comment naming the gap. EXT-X-PROGRAM-DATE-TIME (milliseconds) gives each
    segment's wall-clock start. Segment URLs end in `.mp4`, which HLS clients require.
    """
    st = state(request)
    if not re.fullmatch(ID_PATTERN, camera_id):
        raise HTTPException(400, f"malformed camera id {camera_id[:80]!r}")
    cam = camera_for(st, who, camera_id)
    a, b = parse_range(start, end)
    purpose = check_purpose(st, who, purpose)
    require_approval(st, who, request, "view", [cam.id], a, b)
    with st.vault.sessions() as s:
        segs = [x for x in find_segments(s, cam.id, a, b) if x.kind == "video" and x.envelope is not None]
        for x in segs:
            s.expunge(x)
    if not segs:
        raise HTTPException(404, f"no footage from {cam.id} between {iso(a)} and {iso(b)}")
    inits = [hls.init_info(st, x) for x in segs]
    accesslog.record(
        st,
        who,
        "view",
        purpose,
        source=cam.id,
        start=a,
        end=b,
        request=request,
        segments=len(segs),
        via="hls",
    )
    shifts: dict[str, float] = {}
    total = 0.0
    for x in segs:
        shifts[x.id] = total
        total += x.duration
    ticket, _expires = st.issue_ticket(who.user_id, cam.id, {x.id for x in segs}, st.vault.clock(), shifts)
    lines = [
        "#EXTM3U",
        "#EXT-X-VERSION:7",
        f"#EXT-X-TARGETDURATION:{max(1, math.ceil(max(x.duration for x in segs)))}",
        "#EXT-X-MEDIA-SEQUENCE:0",
        "#EXT-X-PLAYLIST-TYPE:VOD",
        "#EXT-X-INDEPENDENT-SEGMENTS",
    ]
    prev: Segment | None = None
    prev_sig: str | None = None
    for x, init in zip(segs, inits, strict=True):
        uri = f"/api/v1/play/{ticket}/{x.id}.mp4"
        gap = prev is not None and (x.start - prev.end).total_seconds() > GAP_TOLERANCE
        if prev is None or gap or init.signature != prev_sig:
            if prev is not None:
                if gap:
                    lines.append(f"#HOLDFAST-GAP:{iso(prev.end)}/{iso(x.start)}")
                lines.append("#EXT-X-DISCONTINUITY")
            lines.append(f'#EXT-X-MAP:URI="{uri}",BYTERANGE="{init.length}@0"')
        lines.append(f"#EXT-X-PROGRAM-DATE-TIME:{hls.iso_ms(x.start)}")
        lines.append(f"#EXTINF:{x.duration:.3f},")
        lines.append(f"#EXT-X-BYTERANGE:{x.plaintext_bytes - init.length}@{init.length}")
        lines.append(uri)
        prev, prev_sig = x, init.signature
    lines.append("#EXT-X-ENDLIST")
    return Response(
        "\n".join(lines) + "\n",
        media_type="application/vnd.apple.mpegurl",
        headers={"Cache-Control": "no-store"},
    )


@router.get("/play/{ticket}/{name}", response_class=Response, responses=MEDIA_RESPONSES)
def play_segment(
    request: Request,
    ticket: Annotated[str, Path(pattern=r"^[A-Za-z0-9_-]{16,64}$")],
    name: Annotated[str, Path(description="segment id, with `.mp4` in a playlist")],
    who: Principal = Depends(require("security")),
) -> Response:
    """A segment of a logged view (playlist): same bytes as /media, no second log entry.

    In a playlist's view the decode times are moved onto the playlist's timeline (api.hls);
    everything else is the bytes as recorded.
    """
    st = state(request)
    t = st.ticket(ticket, st.vault.clock())
    if t is None or t.user_id != who.user_id:
        raise HTTPException(403, "view ticket unknown or expired: reload the playlist (with a purpose)")
    segment_id = name.removesuffix(".mp4")
    if segment_id not in t.segment_ids:
        raise HTTPException(404, f"segment {segment_id[:80]!r} is not part of this view")
    seg = load_segment(st, who, segment_id)
    shift = t.shifts.get(seg.id)
    patches = hls.decode_time_patches(st, seg, shift) if shift is not None else []
    return media_response(st, seg, request.headers.get("range"), content_type_for(seg), patches)


# -- thumbnails ------------------------------------------------------------------------------


def make_thumbnail(st: AppState, seg: Segment, width: int = 320) -> bytes:
    """First keyframe as JPEG: ffmpeg reads the plaintext on stdin, writes the JPEG on stdout."""

    def plaintext() -> Iterator[bytes]:
        with st.vault.open_segment(seg) as r:
            yield from r.iter_range(0, r.plaintext_size)

    try:
        return media.thumbnail(plaintext, width)
    except media.MediaError as e:
        raise HTTPException(409, f"no thumbnail: segment {seg.id}: {e}") from None


@router.get(
    "/segments/{segment_id}/thumbnail",
    response_class=Response,
    responses={**ERRORS, 200: {"content": {"image/jpeg": {}}}},
)
def segment_thumbnail(
    request: Request,
    segment_id: str,
    purpose: Purpose,
    who: Principal = Depends(require("security")),
) -> Response:
    """The segment's first keyframe as a JPEG, made on a pipe and never stored."""
    st = state(request)
    seg = load_segment(st, who, segment_id)
    if seg.kind != "video":
        raise HTTPException(409, f"segment {seg.id} is audio: no thumbnail")
    purpose = check_purpose(st, who, purpose)
    require_approval(st, who, request, "view", [seg.source], seg.start, seg.end)
    jpeg = make_thumbnail(st, seg)
    accesslog.record(
        st,
        who,
        "thumbnail",
        purpose,
        source=seg.source,
        start=seg.start,
        end=seg.end,
        request=request,
        segment=seg.id,
    )
    return Response(jpeg, media_type="image/jpeg", headers={"Cache-Control": "no-store"})
