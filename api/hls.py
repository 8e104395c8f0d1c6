"""HLS that plays in any client (ffmpeg, hls.js, native): one timeline across segments.

The playlist route lives here; its segments are served by api.media's ticketed play route.

Every segment is a self-contained fragmented MP4 whose decode times start wherever its
recording connection was (0 after every reconnect, and 0 for imported clips). Played one after
another, a client sees time jump backwards at each segment and drops or stalls. So the playlist
gives each segment a shift (the seconds of footage before it in the playlist) and the server
rewrites each fragment's tfdt (baseMediaDecodeTime) as it streams the bytes: the segment's
first fragment starts at its shift and later fragments keep their spacing. The value is
rewritten in place (same size), so every byte range of the playlist stays valid. The rewrite
happens on plaintext in memory while streaming; nothing is written to disk.
"""

from __future__ import annotations

import math
import re
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import Response

from api import accesslog
from api.approvals import require_approval
from api.deps import Principal, require, state
from api.errors import ERRORS
from api.footage import Purpose, TimeParam, camera_for, check_purpose, parse_range
from api.state import AppState
from config.model import ID_PATTERN
from vault.index.queries import GAP_TOLERANCE, find_segments
from vault.index.schema import Segment
from vault.media import mp4
from vault.timeutil import iso

router = APIRouter(prefix="/api/v1", tags=["footage"])

#: Top-level boxes walked per segment at most (a 10 s segment has a few dozen fragments).
MAX_BOXES = 100_000


@dataclass(frozen=True)
class InitInfo:
    """A segment's init section: its length (EXT-X-MAP byte range), signature and timescales."""

    length: int
    signature: str
    timescales: dict[int, int]


def iso_ms(dt: datetime) -> str:
    """UTC with milliseconds, as EXT-X-PROGRAM-DATE-TIME wants it."""
    return dt.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def init_info(st: AppState, seg: Segment) -> InitInfo:
    """The bytes before the first `moof` parsed as an init section (ftyp+moov)."""
    key = ("init", seg.id)
    cached = st.cached(key)
    if cached is not None:
        return cached
    with st.vault.open_plaintext(seg) as r:
        for pos, _size, kind, _header in mp4.walk_boxes(r.read, r.size, limit=64):
            if kind == "moof":
                try:
                    init = mp4.parse_init(r.read(0, pos))
                except mp4.Mp4Error as e:
                    raise HTTPException(
                        409, f"segment {seg.id} has an unreadable init section ({e}): play it with /media"
                    ) from None
                info = InitInfo(
                    pos, init.init_signature, {t.track_id: t.timescale for t in init.tracks.values()}
                )
                st.remember(key, info)
                return info
    raise HTTPException(
        409, f"segment {seg.id} is not fragmented MP4 (no moof box): play it with /media instead"
    )


def decode_time_patches(st: AppState, seg: Segment, shift: float) -> list[tuple[int, bytes]]:
    """(plaintext offset, new bytes) for every tfdt of the segment, moved to start at `shift` s."""
    key = ("tfdt", seg.id, round(shift, 6))
    cached = st.cached(key)
    if cached is not None:
        return cached
    info = init_info(st, seg)
    fields: list[mp4.DecodeTimeField] = []
    with st.vault.open_plaintext(seg) as r:
        for pos, box_size, kind, header in mp4.walk_boxes(r.read, r.size, info.length, MAX_BOXES):
            if pos + box_size > r.size:
                break  # a segment cut short ends mid-box: the rest is not played either
            if kind == "moof":
                moof = mp4.Box("moof", r.read(pos, box_size), pos, header)
                try:
                    fields += mp4.decode_time_fields(moof)
                except mp4.Mp4Error as e:
                    raise HTTPException(409, f"segment {seg.id} has an unreadable fragment: {e}") from None
    first: dict[int, int] = {}
    for f in fields:
        first.setdefault(f.track_id, f.value)
    patches: list[tuple[int, bytes]] = []
    for f in fields:
        scale = info.timescales.get(f.track_id)
        if scale is None:
            continue
        value = f.value - first[f.track_id] + round(shift * scale)
        if f.version == 1:
            patches.append((f.offset, struct.pack(">Q", value)))
        elif value < 2**32:
            patches.append((f.offset, struct.pack(">I", value)))
        else:
            raise HTTPException(
                409,
                f"segment {seg.id} has 32-bit decode times that cannot reach {shift:.0f} s: "
                "ask for a shorter range",
            )
    st.remember(key, patches)
    return patches


def patch_stream(pieces: Iterator[bytes], offset: int, patches: list[tuple[int, bytes]]) -> Iterator[bytes]:
    """The plaintext pieces of a range starting at `offset`, with the patches applied."""
    pos = offset
    for piece in pieces:
        end = pos + len(piece)
        hits = [(p, b) for p, b in patches if p < end and p + len(b) > pos]
        if hits:
            buf = bytearray(piece)
            for p, b in hits:
                for i, byte in enumerate(b):
                    if pos <= p + i < end:
                        buf[p + i - pos] = byte
            piece = bytes(buf)
        yield piece
        pos = end


def open_logged_view(
    request: Request,
    who: Principal,
    purpose: str,
    source: str,
    start: datetime,
    end: datetime,
    segment_ids: set[str],
    shifts: dict[str, float] | None = None,
    **detail: Any,
) -> tuple[str, datetime]:
    """A view's access-log entry and its ticket (token, expiry), in one transaction.

    One durable commit instead of two (the index syncs each commit to disk, and a playlist's
    time to first byte waited for both); and never a ticket without its entry. If the commit
    fails, neither exists and the request's error handler logs the failure."""
    st = state(request)
    try:
        with st.vault.sessions.begin() as s:
            accesslog.record(
                st,
                who,
                "view",
                purpose,
                source=source,
                start=start,
                end=end,
                request=request,
                session=s,
                **detail,
            )
            return st.issue_ticket(who.user_id, source, segment_ids, st.vault.clock(), shifts, s)
    except Exception:
        request.state.access_logged = False
        raise


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
    inits = [init_info(st, x) for x in segs]
    shifts: dict[str, float] = {}
    total = 0.0
    for x in segs:
        shifts[x.id] = total
        total += x.duration
    ticket, _expires = open_logged_view(
        request, who, purpose, cam.id, a, b, {x.id for x in segs}, shifts, segments=len(segs), via="hls"
    )
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
        lines.append(f"#EXT-X-PROGRAM-DATE-TIME:{iso_ms(x.start)}")
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
