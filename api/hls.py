"""HLS that plays in any client (ffmpeg, hls.js, native): one timeline across segments.

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

import struct
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

from fastapi import HTTPException

from api.state import AppState
from vault import mp4
from vault.db import Segment
from vault.seal import SegmentReader

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


def _box_at(r: SegmentReader, pos: int) -> tuple[int, bytes, int]:
    """(size, type, header size) of the top-level box at `pos`."""
    head = r.read(pos, min(16, r.plaintext_size - pos))
    size, kind = struct.unpack(">I4s", head[:8])
    header = 8
    if size == 1:
        if len(head) < 16:
            return 0, kind, 8
        size = struct.unpack(">Q", head[8:16])[0]
        header = 16
    return size, kind, header


def init_info(st: AppState, seg: Segment) -> InitInfo:
    """The bytes before the first `moof` parsed as an init section (ftyp+moov)."""
    key = ("init", seg.id)
    cached = st.cached(key)
    if cached is not None:
        return cached
    with st.vault.open_segment(seg) as r:
        pos, size = 0, r.plaintext_size
        for _ in range(64):
            if pos + 8 > size:
                break
            box_size, kind, _ = _box_at(r, pos)
            if kind == b"moof":
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
            if box_size < 8:
                break
            pos += box_size
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
    with st.vault.open_segment(seg) as r:
        pos, size = info.length, r.plaintext_size
        for _ in range(MAX_BOXES):
            if pos + 8 > size:
                break
            box_size, kind, header = _box_at(r, pos)
            if box_size < 8 or pos + box_size > size:
                break  # a segment cut short ends mid-box: the rest is not played either
            if kind == b"moof":
                moof = mp4.Box("moof", r.read(pos, box_size), pos, header)
                try:
                    fields += mp4.decode_time_fields(moof)
                except mp4.Mp4Error as e:
                    raise HTTPException(409, f"segment {seg.id} has an unreadable fragment: {e}") from None
            pos += box_size
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
