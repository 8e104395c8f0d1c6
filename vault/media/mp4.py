"""Incremental reader for fragmented MP4 arriving on a pipe (ffmpeg ``-f mp4 pipe:1``).

The recorder runs ``ffmpeg ... -c copy -f mp4 -movflags +frag_keyframe+empty_moov+default_base_moof
pipe:1`` and must cut segments at keyframe fragments, seal each chunk as it arrives and notice when
the camera's stream parameters change. For that it needs only the top-level boxes and a few fields
inside them, never the media itself; so this module parses exactly those fields with ``struct``,
keeps memory bounded, and raises :class:`Mp4Error` (naming the box and stream offset) on anything
malformed instead of guessing.

Layers:

* :class:`BoxReader` turns arbitrary byte chunks into complete top-level :class:`Box` objects.
* :class:`FragmentedMp4Reader` groups them into :class:`InitSegment` (ftyp + moov) and
  :class:`Fragment` (moof + mdat) and passes any other box (sidx, mfra, free, prft...) through.
* :func:`parse_init` and :func:`parse_fragment` work on complete byte strings too.

Over 500 lines because it is one parser: the box reader, the fragment grouping and the few field
decoders share the offsets and the error reporting.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator
from typing import NamedTuple

from cryptography.hazmat.primitives import hashes

DEFAULT_MAX_BOX_SIZE = 64 * 1024 * 1024

#: ISO/IEC 14496-12 sample flags: sample_is_non_sync_sample. Clear means a sync (key) sample.
SAMPLE_IS_NON_SYNC = 0x00010000

_U32 = struct.Struct(">I")
_U64 = struct.Struct(">Q")
_HEADER = struct.Struct(">I4s")

# tfhd flags
_TFHD_BASE_DATA_OFFSET = 0x000001
_TFHD_SAMPLE_DESCRIPTION_INDEX = 0x000002
_TFHD_DEFAULT_DURATION = 0x000008
_TFHD_DEFAULT_SIZE = 0x000010
_TFHD_DEFAULT_FLAGS = 0x000020
# trun flags
_TRUN_DATA_OFFSET = 0x000001
_TRUN_FIRST_SAMPLE_FLAGS = 0x000004
_TRUN_DURATION = 0x000100
_TRUN_SIZE = 0x000200
_TRUN_FLAGS = 0x000400
_TRUN_CTO = 0x000800


class Mp4Error(ValueError):
    """Malformed or unsupported MP4 input; says which box and at which stream offset."""

    def __init__(self, message: str, box_type: str | None = None, offset: int | None = None):
        where = ""
        if box_type is not None:
            where = f" (box {box_type!r}"
            where += f" at offset {offset})" if offset is not None else ")"
        elif offset is not None:
            where = f" (at offset {offset})"
        super().__init__(message + where)
        self.box_type = box_type
        self.offset = offset


class BoxTooLargeError(Mp4Error):
    """A box declares a size above the reader's limit: refuse rather than buffer it."""


# ---------------------------------------------------------------------------------------------
# Boxes


class Box(NamedTuple):
    """One complete box: its type, raw bytes (header included) and stream offset."""

    type: str
    data: bytes
    offset: int = 0
    header_size: int = 8

    @property
    def size(self) -> int:
        """Total size in bytes, header included."""
        return len(self.data)

    @property
    def payload(self) -> bytes:
        """The bytes after the header (a copy; use :func:`iter_boxes` offsets to avoid it)."""
        return self.data[self.header_size :]


def _box_type(raw: bytes, offset: int) -> str:
    """Decode a four-character code; top-level and structural codes are printable ASCII."""
    if not all(0x20 <= b <= 0x7E or b == 0xA9 for b in raw):
        raise Mp4Error(f"box type {raw!r} is not a four-character code", raw.hex(), offset)
    return raw.decode("latin-1")


def _parse_header(
    buf: bytes | bytearray | memoryview, pos: int, end: int, offset: int
) -> tuple[int, str, int] | None:
    """Parse a box header at ``pos``: (size, type, header_size), or None if incomplete.

    ``offset`` is the stream offset of ``pos`` for error messages. Size 0 ("to end of file")
    is rejected: on a live pipe there is no end of file to run to.
    """
    if end - pos < 8:
        return None
    size, raw_type = _HEADER.unpack_from(buf, pos)
    box_type = _box_type(raw_type, offset)
    header = 8
    if size == 1:
        if end - pos < 16:
            return None
        (size,) = _U64.unpack_from(buf, pos + 8)
        header = 16
        if size < 16:
            raise Mp4Error(f"64-bit box size {size} is smaller than its header", box_type, offset)
    elif size == 0:
        raise Mp4Error("box size 0 (extends to end of file) is unsupported here", box_type, offset)
    elif size < 8:
        raise Mp4Error(f"box size {size} is smaller than its header", box_type, offset)
    if box_type == "uuid":
        header += 16
        if size < header:
            raise Mp4Error(f"uuid box size {size} is smaller than its header", box_type, offset)
    return size, box_type, header


def iter_boxes(data: bytes, start: int = 0, end: int | None = None, base: int = 0) -> Iterator[Box]:
    """Iterate the complete boxes in ``data[start:end]`` (children of a container box).

    ``base`` is the stream offset of ``data[0]``, for error messages. Anything that does not
    fit exactly raises :class:`Mp4Error`.
    """
    end = len(data) if end is None else end
    pos = start
    while pos < end:
        parsed = _parse_header(data, pos, end, base + pos)
        if parsed is None:
            raise Mp4Error(f"{end - pos} trailing bytes are not a box", None, base + pos)
        size, box_type, header = parsed
        if pos + size > end:
            raise Mp4Error(
                f"box size {size} runs past its parent ({end - pos} bytes left)",
                box_type,
                base + pos,
            )
        yield Box(box_type, bytes(data[pos : pos + size]), base + pos, header)
        pos += size


def walk_boxes(
    read: Callable[[int, int], bytes], size: int, start: int = 0, limit: int = 100_000
) -> Iterator[tuple[int, int, str, int]]:
    """(offset, size, type, header size) of each top-level box of a `size`-byte file that
    `read(offset, length)` reads at random, from `start`, at most `limit` boxes.

    Reads only the headers, so a sealed segment decrypts just the chunks they sit in. Stops
    where no whole, well-formed header is left: a box may still run past `size` (a segment cut
    short ends mid-box), which the caller checks if it reads the box.
    """
    pos = start
    for _ in range(limit):
        if pos + 8 > size:
            return
        try:
            parsed = _parse_header(read(pos, min(16, size - pos)), 0, min(16, size - pos), pos)
        except Mp4Error:
            return
        if parsed is None:
            return
        box_size, box_type, header = parsed
        yield pos, box_size, box_type, header
        pos += box_size


class BoxReader:
    """Turns arbitrary byte chunks into complete top-level boxes, with bounded memory.

    Why: a pipe delivers whatever the kernel had (a few bytes to 64 KiB), boxes span reads,
    and a corrupt size field must not make us buffer gigabytes before noticing.
    """

    def __init__(self, max_box_size: int = DEFAULT_MAX_BOX_SIZE) -> None:
        self.max_box_size = max_box_size
        self._buf = bytearray()
        self._pos = 0  # consumed bytes at the front of _buf
        self._offset = 0  # stream offset of _buf[0]
        self._failed: Mp4Error | None = None

    @property
    def offset(self) -> int:
        """Stream offset of the first byte not yet returned in a box."""
        return self._offset + self._pos

    @property
    def buffered(self) -> int:
        """Bytes held for a box not yet complete."""
        return len(self._buf) - self._pos

    def feed(self, data: bytes | bytearray | memoryview) -> list[Box]:
        """Add bytes; return the boxes they completed, in stream order.

        After an error the stream position is lost, so every later call raises it again.
        """
        if self._failed is not None:
            raise self._failed
        if data:
            self._buf += data
        boxes: list[Box] = []
        buf = self._buf
        end = len(buf)
        try:
            while True:
                parsed = _parse_header(buf, self._pos, end, self.offset)
                if parsed is None:
                    break
                size, box_type, header = parsed
                if size > self.max_box_size:
                    raise BoxTooLargeError(
                        f"box size {size} exceeds the limit of {self.max_box_size} bytes",
                        box_type,
                        self.offset,
                    )
                if end - self._pos < size:
                    break
                with memoryview(buf) as view:  # one copy out of the buffer, not two
                    raw = bytes(view[self._pos : self._pos + size])
                boxes.append(Box(box_type, raw, self.offset, header))
                self._pos += size
        except Mp4Error as exc:
            self._failed = exc
            raise
        # Compact once the consumed prefix dominates: amortised O(n), memory ~ one box.
        if self._pos and self._pos * 2 >= len(buf):
            del buf[: self._pos]
            self._offset += self._pos
            self._pos = 0
        return boxes

    def at_boundary(self) -> bool:
        """True when no partial box is pending (a clean end of stream)."""
        return self.buffered == 0


# ---------------------------------------------------------------------------------------------
# Init segment


class TrackInfo(NamedTuple):
    """What the recorder needs to know about one track of the init segment."""

    track_id: int
    handler: str  # "vide", "soun", ...
    codec: str  # sample entry fourcc: avc1, avc3, hev1, hvc1, mp4a, Opus, ...
    timescale: int  # mdhd ticks per second
    width: int | None = None
    height: int | None = None
    channels: int | None = None  # as the sample entry says (ffmpeg writes 2 for any mp4a)
    sample_rate: int | None = None
    default_sample_duration: int | None = None  # from trex
    default_sample_flags: int | None = None  # from trex

    @property
    def is_video(self) -> bool:
        return self.handler == "vide"

    @property
    def is_audio(self) -> bool:
        return self.handler == "soun"


class InitSegment(NamedTuple):
    """ftyp + moov: what a player needs before any fragment; changes when the stream does."""

    data: bytes
    tracks: dict[int, TrackInfo]
    init_signature: str  # hex SHA-256 over each track's id, handler, timescale and stsd bytes
    offset: int = 0

    @property
    def track_ids(self) -> list[int]:
        return sorted(self.tracks)

    @property
    def video(self) -> TrackInfo | None:
        """The first video track, if any."""
        return next((t for t in self.tracks.values() if t.is_video), None)

    @property
    def audio(self) -> TrackInfo | None:
        """The first audio track, if any."""
        return next((t for t in self.tracks.values() if t.is_audio), None)

    @property
    def primary(self) -> TrackInfo:
        """The track timing and keyframes are judged by: video, else audio, else the first."""
        return self.video or self.audio or self.tracks[min(self.tracks)]


def _child(box: Box, box_type: str, skip: int = 0) -> Box | None:
    """First child of ``box`` with the given type (``skip`` bytes of fields before children)."""
    for child in iter_boxes(box.data, box.header_size + skip, base=box.offset):
        if child.type == box_type:
            return child
    return None


def _need(box: Box, length: int, at: int) -> None:
    """Fail clearly when a box is too short for the field about to be read."""
    if at + length > len(box.data):
        raise Mp4Error(f"truncated: needs {at + length} bytes, has {len(box.data)}", box.type, box.offset)


def _full_box(box: Box) -> tuple[int, int, int]:
    """(version, flags, position after them) of a FullBox."""
    p = box.header_size
    _need(box, 4, p)
    (vf,) = _U32.unpack_from(box.data, p)
    return vf >> 24, vf & 0xFFFFFF, p + 4


def _parse_trak(trak: Box) -> tuple[TrackInfo, bytes]:
    """Track id, handler, timescale and codec description; returns (info, stsd bytes)."""
    tkhd = _child(trak, "tkhd")
    mdia = _child(trak, "mdia")
    if tkhd is None or mdia is None:
        raise Mp4Error("trak without tkhd or mdia", trak.type, trak.offset)
    version, _, p = _full_box(tkhd)
    p += 16 if version == 1 else 8  # creation + modification time
    _need(tkhd, 4, p)
    (track_id,) = _U32.unpack_from(tkhd.data, p)

    mdhd = _child(mdia, "mdhd")
    hdlr = _child(mdia, "hdlr")
    if mdhd is None or hdlr is None:
        raise Mp4Error("mdia without mdhd or hdlr", mdia.type, mdia.offset)
    version, _, p = _full_box(mdhd)
    p += 16 if version == 1 else 8
    _need(mdhd, 4, p)
    (timescale,) = _U32.unpack_from(mdhd.data, p)
    if timescale == 0:
        raise Mp4Error(f"track {track_id} has timescale 0", mdhd.type, mdhd.offset)
    _, _, p = _full_box(hdlr)
    _need(hdlr, 8, p)
    handler = hdlr.data[p + 4 : p + 8].decode("latin-1")

    minf = _child(mdia, "minf")
    stbl = _child(minf, "stbl") if minf is not None else None
    stsd = _child(stbl, "stsd") if stbl is not None else None
    if stsd is None:
        raise Mp4Error(f"track {track_id} has no stsd", mdia.type, mdia.offset)
    _, _, p = _full_box(stsd)
    _need(stsd, 4, p)
    entries = iter_boxes(stsd.data, p + 4, base=stsd.offset)
    entry = next(entries, None)
    if entry is None:
        raise Mp4Error(f"track {track_id} has an empty stsd", stsd.type, stsd.offset)
    info = TrackInfo(track_id=track_id, handler=handler, codec=entry.type, timescale=timescale)
    e = entry.header_size + 8  # SampleEntry: 6 reserved + data_reference_index
    if handler == "vide":
        _need(entry, 20, e)
        width, height = struct.unpack_from(">HH", entry.data, e + 16)
        info = info._replace(width=width, height=height)
    elif handler == "soun":
        _need(entry, 20, e)
        channels, _, _, _, rate = struct.unpack_from(">HHHHI", entry.data, e + 8)
        info = info._replace(channels=channels, sample_rate=rate >> 16)
    return info, stsd.data


def parse_init(data: bytes, offset: int = 0) -> InitSegment:
    """Parse ftyp + moov bytes (or moov alone) into an :class:`InitSegment`."""
    moov: Box | None = None
    for box in iter_boxes(data, base=offset):
        if box.type == "moov":
            moov = box
    if moov is None:
        raise Mp4Error("init segment has no moov", None, offset)
    tracks: dict[int, TrackInfo] = {}
    signature = hashes.Hash(hashes.SHA256())  # not hashlib: see recorder.camera's import budget
    trex: dict[int, tuple[int, int]] = {}
    for child in iter_boxes(moov.data, moov.header_size, base=moov.offset):
        if child.type == "trak":
            info, stsd = _parse_trak(child)
            if info.track_id in tracks:
                raise Mp4Error(f"duplicate track id {info.track_id}", child.type, child.offset)
            tracks[info.track_id] = info
            signature.update(
                struct.pack(">I4sI", info.track_id, info.handler.encode("latin-1"), info.timescale)
            )
            signature.update(_U32.pack(len(stsd)) + stsd)
        elif child.type == "mvex":
            for ex in iter_boxes(child.data, child.header_size, base=child.offset):
                if ex.type == "trex":
                    _, _, p = _full_box(ex)
                    _need(ex, 20, p)
                    tid, _, duration, _, flags = struct.unpack_from(">5I", ex.data, p)
                    trex[tid] = (duration, flags)
    if not tracks:
        raise Mp4Error("moov has no tracks", moov.type, moov.offset)
    for tid, (duration, flags) in trex.items():
        if tid in tracks:
            tracks[tid] = tracks[tid]._replace(default_sample_duration=duration, default_sample_flags=flags)
    return InitSegment(bytes(data), tracks, signature.finalize().hex(), offset)


# ---------------------------------------------------------------------------------------------
# Fragments


class TrackFragment(NamedTuple):
    """One traf of a moof, reduced to timing and the first sample's sync flag."""

    track_id: int
    base_media_decode_time: int | None  # tfdt, in the track's timescale
    duration: int  # sum of sample durations, in the track's timescale
    sample_count: int
    first_sample_flags: int | None  # resolved: trun first/per-sample, tfhd, then trex default

    @property
    def starts_with_sync_sample(self) -> bool:
        """Whether the first sample is a sync sample (non-sync bit clear)."""
        return self.first_sample_flags is not None and not self.first_sample_flags & SAMPLE_IS_NON_SYNC


class Fragment(NamedTuple):
    """moof + mdat: the unit the recorder seals and cuts segments at."""

    moof: Box
    mdat: Box
    sequence_number: int
    tracks: dict[int, TrackFragment]
    init: InitSegment

    @property
    def data(self) -> bytes:
        """moof + mdat bytes, exactly as received."""
        return self.moof.data + self.mdat.data

    @property
    def size(self) -> int:
        return self.moof.size + self.mdat.size

    @property
    def offset(self) -> int:
        return self.moof.offset

    @property
    def primary(self) -> TrackFragment | None:
        """This fragment's run of the video track (else audio, else whatever it carries)."""
        for info in (self.init.video, self.init.audio):
            if info is not None and info.track_id in self.tracks:
                return self.tracks[info.track_id]
        if self.init.video is None and self.tracks:
            return self.tracks[min(self.tracks)]
        return None

    @property
    def is_keyframe(self) -> bool:
        """True when the fragment starts with a sync sample of the video track.

        For audio-only streams, whether the first audio sample is a sync sample (normally all).
        A fragment of an audio+video stream that carries no video is not a cut point.
        """
        video = self.init.video
        if video is not None:
            run = self.tracks.get(video.track_id)
            return run is not None and run.sample_count > 0 and run.starts_with_sync_sample
        run = self.primary
        return run is not None and (run.first_sample_flags is None or run.starts_with_sync_sample)

    def _timescale(self, run: TrackFragment) -> int:
        return self.init.tracks[run.track_id].timescale

    @property
    def duration_seconds(self) -> float:
        """Duration of the primary track's samples in this fragment."""
        run = self.primary
        return 0.0 if run is None else run.duration / self._timescale(run)

    @property
    def decode_time_seconds(self) -> float | None:
        """baseMediaDecodeTime of the primary track, in seconds (None without tfdt)."""
        run = self.primary
        if run is None or run.base_media_decode_time is None:
            return None
        return run.base_media_decode_time / self._timescale(run)


#: tfhd's optional fields after the track id, in their order: (flag, byte size).
_TFHD_OPTIONAL = (
    (_TFHD_BASE_DATA_OFFSET, 8),
    (_TFHD_SAMPLE_DESCRIPTION_INDEX, 4),
    (_TFHD_DEFAULT_DURATION, 4),
    (_TFHD_DEFAULT_SIZE, 4),
    (_TFHD_DEFAULT_FLAGS, 4),
)


def _tfhd_optional_size(flags: int) -> int:
    return sum(size for flag, size in _TFHD_OPTIONAL if flags & flag)


def _tfhd_optional(data: bytes | bytearray | memoryview, p: int, flags: int) -> dict[int, int]:
    """tfhd's optional fields present in `flags`, by flag, read from `p` (the caller checked the length)."""
    given: dict[int, int] = {}
    for flag, size in _TFHD_OPTIONAL:
        if flags & flag:
            given[flag] = (_U64 if size == 8 else _U32).unpack_from(data, p)[0]
            p += size
    return given


def _tfhd(traf: Box) -> tuple[Box, int, int, int]:
    """A traf's tfhd: the box, its flags, the track id and the position after the track id."""
    tfhd = _child(traf, "tfhd")
    if tfhd is None:
        raise Mp4Error("traf without tfhd", traf.type, traf.offset)
    _, flags, p = _full_box(tfhd)
    _need(tfhd, 4, p)
    (track_id,) = _U32.unpack_from(tfhd.data, p)
    return tfhd, flags, track_id, p + 4


def _parse_traf(traf: Box, init: InitSegment) -> TrackFragment:
    """tfhd defaults, tfdt and every trun of one track fragment."""
    tfhd, flags, track_id, p = _tfhd(traf)
    info = init.tracks.get(track_id)
    if info is None:
        raise Mp4Error(f"fragment for track {track_id}, not in the init segment", tfhd.type, tfhd.offset)
    _need(tfhd, _tfhd_optional_size(flags), p)
    given = _tfhd_optional(tfhd.data, p, flags)
    default_duration = given.get(_TFHD_DEFAULT_DURATION, info.default_sample_duration)
    default_flags = given.get(_TFHD_DEFAULT_FLAGS, info.default_sample_flags)

    decode_time: int | None = None
    duration = 0
    count = 0
    first_flags: int | None = None
    for child in iter_boxes(traf.data, traf.header_size, base=traf.offset):
        if child.type == "tfdt":
            version, _, q = _full_box(child)
            _need(child, 8 if version == 1 else 4, q)
            decode_time = (_U64 if version == 1 else _U32).unpack_from(child.data, q)[0]
        elif child.type == "trun":
            d, n, f = _parse_trun(child, default_duration)
            if count == 0 and n > 0:
                f = f if f is not None else default_flags
                first_flags = f
            duration += d
            count += n
    return TrackFragment(track_id, decode_time, duration, count, first_flags)


def _parse_trun(trun: Box, default_duration: int | None) -> tuple[int, int, int | None]:
    """(total duration, sample count, first sample's own flags or None) of one trun."""
    _, flags, p = _full_box(trun)
    _need(trun, 4, p)
    (count,) = _U32.unpack_from(trun.data, p)
    p += 4
    if flags & _TRUN_DATA_OFFSET:
        p += 4
    first_flags: int | None = None
    if flags & _TRUN_FIRST_SAMPLE_FLAGS:
        _need(trun, 4, p)
        (first_flags,) = _U32.unpack_from(trun.data, p)
        p += 4
    fields = [f for f in (_TRUN_DURATION, _TRUN_SIZE, _TRUN_FLAGS, _TRUN_CTO) if flags & f]
    stride = 4 * len(fields)
    _need(trun, stride * count, p)
    if flags & _TRUN_DURATION:
        duration = sum(_U32.unpack_from(trun.data, p + i * stride)[0] for i in range(count))
    elif count == 0:
        duration = 0
    elif default_duration is None:
        raise Mp4Error("no sample durations in trun, tfhd or trex", trun.type, trun.offset)
    else:
        duration = default_duration * count
    if first_flags is None and flags & _TRUN_FLAGS and count > 0:
        at = p + 4 * fields.index(_TRUN_FLAGS)
        (first_flags,) = _U32.unpack_from(trun.data, at)
    return duration, count, first_flags


def parse_fragment(moof: Box, mdat: Box, init: InitSegment) -> Fragment:
    """Read sequence number and per-track timing of a moof (the mdat is carried, not read)."""
    sequence: int | None = None
    tracks: dict[int, TrackFragment] = {}
    for child in iter_boxes(moof.data, moof.header_size, base=moof.offset):
        if child.type == "mfhd":
            _, _, p = _full_box(child)
            _need(child, 4, p)
            (sequence,) = _U32.unpack_from(child.data, p)
        elif child.type == "traf":
            run = _parse_traf(child, init)
            if run.track_id in tracks:
                raise Mp4Error(f"two trafs for track {run.track_id}", child.type, child.offset)
            tracks[run.track_id] = run
    if sequence is None:
        raise Mp4Error("moof without mfhd", moof.type, moof.offset)
    return Fragment(moof, mdat, sequence, tracks, init)


# ---------------------------------------------------------------------------------------------
# Stream


Item = InitSegment | Fragment | Box


class FragmentedMp4Reader:
    """Feed it ffmpeg's stdout; get init segments, fragments and other boxes, in order.

    An init segment is emitted when its moov completes (with the ftyp before it), a fragment
    when its mdat completes. Other top-level boxes (sidx, mfra, prft, free, ...) come out as
    :class:`Box`. A new init segment replaces the current one; compare ``init_signature`` to
    decide whether a new recording segment must start.
    """

    def __init__(self, max_box_size: int = DEFAULT_MAX_BOX_SIZE) -> None:
        self.boxes = BoxReader(max_box_size)
        self.init: InitSegment | None = None
        self._ftyp: Box | None = None
        self._moof: Box | None = None
        self.fragments = 0

    def feed(self, data: bytes | bytearray | memoryview) -> list[Item]:
        """Add bytes; return what they completed."""
        out: list[Item] = []
        for box in self.boxes.feed(data):
            item = self._on_box(box)
            if item is not None:
                out.append(item)
        return out

    def _on_box(self, box: Box) -> Item | None:
        if box.type == "ftyp":
            self._ftyp = box
            return None
        if box.type == "moov":
            head = self._ftyp.data if self._ftyp is not None else b""
            start = self._ftyp.offset if self._ftyp is not None else box.offset
            self._ftyp = None
            self.init = parse_init(head + box.data, start)
            return self.init
        if box.type == "moof":
            if self._moof is not None:
                raise Mp4Error("moof follows a moof without its mdat", box.type, box.offset)
            if self.init is None:
                raise Mp4Error("fragment before any init segment (ftyp/moov)", box.type, box.offset)
            self._moof = box
            return None
        if box.type == "mdat" and self._moof is not None:
            moof, self._moof = self._moof, None
            self.fragments += 1
            assert self.init is not None
            return parse_fragment(moof, box, self.init)
        return box

    @property
    def pending(self) -> bool:
        """True while a partial box, a lone ftyp or a moof awaiting its mdat is held."""
        return not self.boxes.at_boundary() or self._ftyp is not None or self._moof is not None


class DecodeTimeField(NamedTuple):
    """Where one traf's tfdt (baseMediaDecodeTime) lies, so a server can rewrite it in place."""

    track_id: int
    offset: int  # stream offset of the value
    version: int  # 0: 32-bit value, 1: 64-bit value
    value: int


def decode_time_fields(moof: Box) -> list[DecodeTimeField]:
    """The tfdt of each track fragment of ``moof``, with the stream offset of its value.

    Why: playing several segments as one stream needs their decode times to continue from one
    segment to the next; rewriting the fixed-size value keeps every byte offset valid.
    """
    fields: list[DecodeTimeField] = []
    for traf in iter_boxes(moof.data, moof.header_size, base=moof.offset):
        if traf.type != "traf":
            continue
        _, _, track_id, _ = _tfhd(traf)
        for child in iter_boxes(traf.data, traf.header_size, base=traf.offset):
            if child.type == "tfdt":
                version, _, q = _full_box(child)
                _need(child, 8 if version == 1 else 4, q)
                value = (_U64 if version == 1 else _U32).unpack_from(child.data, q)[0]
                fields.append(DecodeTimeField(track_id, child.offset + q, version, value))
    return fields


class TrackTimes(NamedTuple):
    """One traf of a moof as a join sees it: where its decode time lies and how long it runs."""

    track_id: int
    offset: int  # of the tfdt value, from the start of the moof box
    version: int  # 0: 32-bit value, 1: 64-bit value
    decode_time: int
    duration: int  # the sum of its samples' durations, in the track's timescale


def _spans(
    buf: bytes | bytearray | memoryview, start: int, end: int, where: str
) -> Iterator[tuple[bytes, int, int]]:
    """(type, payload start, end) of each box in buf[start:end]: offsets only, no copies."""
    p = start
    while p < end:
        if end - p < 8:
            raise Mp4Error(f"{end - p} stray bytes where a box header belongs", where, p)
        size, kind = _HEADER.unpack_from(buf, p)
        head = 8
        if size == 1 and end - p >= 16:
            (size,) = _U64.unpack_from(buf, p + 8)
            head = 16
        if size < head or p + size > end:
            raise Mp4Error(f"box {kind!r} of size {size} does not fit its parent", where, p)
        yield kind, p + head, p + size
        p += size


def moof_times(
    moof: bytes | bytearray | memoryview, default_durations: dict[int, int | None]
) -> tuple[int, list[TrackTimes]]:
    """The offset of mfhd's sequence number in `moof` (a whole moof box) and each traf's times.

    Why: joining segments rewrites only these fixed-size fields, so finding them by offsets,
    without a Box object per child or a copy of any, keeps the join's per-fragment cost small.
    `default_durations` are the init section's per-track trex defaults (its track ids).
    Refuses fragments whose samples are addressed by absolute file offsets (they cannot move).
    """
    size, _ = _HEADER.unpack_from(moof, 0)
    head = 16 if size == 1 else 8
    sequence_at: int | None = None
    tracks: list[TrackTimes] = []
    for kind, p, end in _spans(moof, head, len(moof), "moof"):
        if kind == b"mfhd":
            if end - p < 8:
                raise Mp4Error("truncated mfhd", "mfhd", p)
            sequence_at = p + 4
        elif kind == b"traf":
            tracks.append(_traf_times(moof, p, end, default_durations))
    if sequence_at is None:
        raise Mp4Error("moof without mfhd", "moof", 0)
    if len({t.track_id for t in tracks}) != len(tracks):
        raise Mp4Error("two trafs for one track", "moof", 0)
    return sequence_at, tracks


def _traf_times(
    buf: bytes | bytearray | memoryview, start: int, end: int, defaults: dict[int, int | None]
) -> TrackTimes:
    track_id: int | None = None
    default_duration: int | None = None
    tfdt: tuple[int, int, int] | None = None  # offset, version, value
    duration = 0
    for kind, p, box_end in _spans(buf, start, end, "traf"):
        if kind not in (b"tfhd", b"tfdt", b"trun"):
            continue
        if box_end - p < 4:
            raise Mp4Error(f"truncated {kind!r}", "traf", p)
        (vf,) = _U32.unpack_from(buf, p)
        version, flags, q = vf >> 24, vf & 0xFFFFFF, p + 4
        if kind == b"tfhd":
            if box_end - q < 4 + _tfhd_optional_size(flags):
                raise Mp4Error("truncated tfhd", "tfhd", p)
            if flags & _TFHD_BASE_DATA_OFFSET:
                raise Mp4Error("fragments address samples by absolute file offset", "tfhd", p)
            (track_id,) = _U32.unpack_from(buf, q)
            if track_id not in defaults:
                raise Mp4Error(f"fragment for track {track_id}, not in the init segment", "tfhd", p)
            given = _tfhd_optional(buf, q + 4, flags)
            default_duration = given.get(_TFHD_DEFAULT_DURATION, defaults[track_id])
        elif kind == b"tfdt":
            width = 8 if version == 1 else 4
            if box_end - q < width:
                raise Mp4Error("truncated tfdt", "tfdt", p)
            tfdt = (q, version, (_U64 if version == 1 else _U32).unpack_from(buf, q)[0])
        elif kind == b"trun":
            if track_id is None:
                raise Mp4Error("trun before tfhd", "trun", p)
            duration += _trun_duration(buf, q, box_end, flags, default_duration)
    if track_id is None:
        raise Mp4Error("traf without tfhd", "traf", start)
    if tfdt is None:
        raise Mp4Error("a track fragment without tfdt (decode time)", "traf", start)
    return TrackTimes(track_id, tfdt[0], tfdt[1], tfdt[2], duration)


def _trun_duration(
    buf: bytes | bytearray | memoryview, q: int, end: int, flags: int, default: int | None
) -> int:
    """The sum of one trun's sample durations: unpacked in one call, not sample by sample."""
    if end - q < 4:
        raise Mp4Error("truncated trun", "trun", q)
    (count,) = _U32.unpack_from(buf, q)
    q += 4 + 4 * bool(flags & _TRUN_DATA_OFFSET) + 4 * bool(flags & _TRUN_FIRST_SAMPLE_FLAGS)
    per_sample = sum(1 for f in (_TRUN_DURATION, _TRUN_SIZE, _TRUN_FLAGS, _TRUN_CTO) if flags & f)
    if end - q < 4 * per_sample * count:
        raise Mp4Error(f"trun of {count} samples is truncated", "trun", q)
    if flags & _TRUN_DURATION:
        return sum(struct.unpack_from(f">{per_sample * count}I", buf, q)[::per_sample])
    if count and default is None:
        raise Mp4Error("no sample durations in trun, tfhd or trex", "trun", q)
    return (default or 0) * count
