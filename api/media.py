"""Media serving: a segment's bytes with HTTP Range, logged views and their tickets, thumbnails.

Reads decrypt only the chunks a byte range touches (Vault.open_plaintext); plaintext is
streamed to the client and never written to disk. Thumbnails are made by ffmpeg reading the
segment on a pipe and writing the JPEG to a pipe.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path, Request
from fastapi.responses import Response, StreamingResponse
from pydantic import BaseModel, Field

from api import accesslog, hls
from api.approvals import require_approval
from api.deps import Principal, require, state
from api.errors import ERRORS
from api.footage import Purpose, check_purpose, content_type_for, load_segment
from api.pools import in_pool
from api.state import AppState
from vault.index.schema import Segment
from vault.media import tools
from vault.timeutil import iso

router = APIRouter(prefix="/api/v1", tags=["footage"])


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
    plain = st.vault.open_plaintext(seg)
    try:
        size = plain.size
        rng = parse_byte_range(range_header, size)
        if before_send is not None:
            before_send("all" if rng is None else f"bytes={rng[0]}-{rng[0] + rng[1] - 1}")
    except BaseException:
        plain.close()
        raise
    headers = {"Accept-Ranges": "bytes", "Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}
    off, n = (0, size) if rng is None else rng
    pieces = plain.stream(off, n)
    body = hls.patch_stream(pieces, off, patches) if patches else pieces
    headers["Content-Length"] = str(n)
    if rng is None:
        return StreamingResponse(body, 200, headers=headers, media_type=content_type)
    headers["Content-Range"] = f"bytes {off}-{off + n - 1}/{size}"
    return StreamingResponse(body, 206, headers=headers, media_type=content_type)


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


class SegmentAccess:
    """One segment a user may see, asked for with a checked purpose: the route's access-log entry
    is written by `log`, naming the segment, its source and time span."""

    def __init__(self, request: Request, who: Principal, seg: Segment, purpose: str) -> None:
        self.request, self.who, self.seg, self.purpose = request, who, seg, purpose

    def log(self, action: str, **extra: Any) -> None:
        seg = self.seg
        accesslog.record(
            state(self.request),
            self.who,
            action,
            self.purpose,
            source=seg.source,
            start=seg.start,
            end=seg.end,
            request=self.request,
            segment=seg.id,
            **extra,
        )


def segment_access(
    request: Request, who: Principal, segment_id: str, purpose: str, video_only: str | None = None
) -> SegmentAccess:
    """The segment (404 unknown, 403 another site), refused for audio when `video_only` names
    what needs video, and the purpose as the access log keeps it (check_purpose)."""
    st = state(request)
    seg = load_segment(st, who, segment_id)
    if video_only is not None and seg.kind != "video":
        raise HTTPException(409, f"segment {seg.id} is audio: no {video_only}")
    purpose = check_purpose(st, who, purpose)
    require_approval(st, who, request, "view", [seg.source], seg.start, seg.end)
    return SegmentAccess(request, who, seg, purpose)


@router.get("/segments/{segment_id}/media", response_class=Response, responses=MEDIA_RESPONSES)
def segment_media(
    request: Request,
    segment_id: str,
    purpose: Purpose,
    who: Principal = Depends(require("security")),
) -> Response:
    """The segment's plaintext bytes exactly as recorded; HTTP Range gives 206 and decrypts only touched chunks."""
    view = segment_access(request, who, segment_id, purpose)
    seg = view.seg
    return media_response(
        state(request),
        seg,
        request.headers.get("range"),
        content_type_for(seg),
        before_send=lambda served: view.log("view", range=served),
    )


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
    view = segment_access(request, who, segment_id, body.purpose)
    seg = view.seg
    ticket, expires = hls.open_logged_view(
        request, who, view.purpose, seg.source, seg.start, seg.end, {seg.id}, segment=seg.id, via="ticket"
    )
    return ViewOut(
        segment=seg.id,
        url=f"/api/v1/play/{ticket}/{seg.id}",
        mime=content_type_for(seg),
        expires=iso(expires),
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
    try:
        return tools.thumbnail(lambda: st.vault.read_plaintext(seg), width)
    except tools.MediaError as e:
        raise HTTPException(409, f"no thumbnail: segment {seg.id}: {e}") from None


@router.get(
    "/segments/{segment_id}/thumbnail",
    response_class=Response,
    responses={**ERRORS, 200: {"content": {"image/jpeg": {}}}},
)
@in_pool("long")
def segment_thumbnail(
    request: Request,
    segment_id: str,
    purpose: Purpose,
    who: Principal = Depends(require("security")),
) -> Response:
    """The segment's first keyframe as a JPEG, made on a pipe and never stored."""
    view = segment_access(request, who, segment_id, purpose, video_only="thumbnail")
    jpeg = make_thumbnail(state(request), view.seg)
    view.log("thumbnail")
    return Response(jpeg, media_type="image/jpeg", headers={"Cache-Control": "no-store"})
