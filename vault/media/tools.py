"""Every ffmpeg and ffprobe run outside the recorders' capture processes, in one place.

Probing uses ffmpeg-python's `ffmpeg.probe`; filter graphs and argument lists (thumbnails, the
redaction decoder and encoder, the export's concat fallback) are composed with ffmpeg-python and
run here with our own timeouts and error messages. The recorders keep plain argument lists
(recorder/camera.py, recorder/calls.py): they are long-running capture processes with a memory
budget per camera, and importing ffmpeg-python (and its `future` dependency) there costs memory
for nothing but building one fixed list (figure in recorder/camera.py's module doc).

A recording run's segments are joined into one MP4 without ffmpeg at all when they can be
(`join_fragmented`): each segment is a fragmented MP4 with the same init section (ftyp+moov), so
the joined file is that init section once, then every segment's moof+mdat fragments with their
decode times (tfdt) made continuous and sequence numbers renumbered. That streams at the speed of
decryption; remuxing through ffmpeg's concat demuxer and a `+faststart` rewrite did not.

Over 500 lines because every ffmpeg run outside the recorders is here by design (one place to audit
what touches plaintext media), and the box-by-box join is media work too.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import struct
import subprocess
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from fractions import Fraction
from pathlib import Path
from typing import IO, Any, BinaryIO

import ffmpeg

from vault.errors import HoldfastError
from vault.media import mp4

#: Seconds between 1904-01-01 (MP4's epoch) and 1970-01-01.
MP4_EPOCH_OFFSET = 2082844800
_QUIET = ("-nostdin", "-hide_banner", "-loglevel", "error")


class MediaError(HoldfastError):
    pass


class NotJoinable(MediaError):
    """These segments cannot be joined box by box (different init sections, not fragmented MP4,
    absolute data offsets): the caller falls back to ffmpeg's concat demuxer."""


def require(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        raise MediaError(
            f"{tool} not found on PATH (install Debian's ffmpeg package: apt-get install ffmpeg)"
        )
    return path


# -- probing -----------------------------------------------------------------------------------


def probe_raw(source: str | Path, **options: Any) -> dict[str, Any]:
    """ffprobe's JSON (format and streams) for a file or FIFO, via `ffmpeg.probe`."""
    try:
        return ffmpeg.probe(str(source), cmd=require("ffprobe"), v="error", **options)
    except ffmpeg.Error as e:
        last = (e.stderr or b"").decode(errors="replace").strip().splitlines()[-1:] or ["?"]
        raise MediaError(f"ffprobe cannot read {source}: {last[0]}") from None


def probe(source: str | Path) -> dict[str, Any]:
    """Duration, first video/audio stream facts of a plaintext media file."""
    data = probe_raw(source)
    info: dict[str, Any] = {"duration": float(data.get("format", {}).get("duration") or 0.0)}
    for s in data.get("streams", []):
        if s.get("codec_type") == "video" and "video_codec" not in info:
            info.update(video_codec=s.get("codec_name"), width=s.get("width"), height=s.get("height"))
        elif s.get("codec_type") == "audio" and "audio_codec" not in info:
            info.update(
                audio_codec=s.get("codec_name"),
                sample_rate=int(s.get("sample_rate") or 0),
                channels=s.get("channels"),
            )
    info["kind"] = "video" if "video_codec" in info else ("audio" if "audio_codec" in info else "data")
    info["format"] = data.get("format", {}).get("format_name")
    return info


def video_geometry(data: dict[str, Any]) -> tuple[int, int, str]:
    """(width, height, frame rate as ffmpeg writes it) of the first video stream of a probe."""
    for s in data.get("streams", []):
        if s.get("codec_type") == "video":
            rate = s.get("avg_frame_rate")
            if rate in (None, "0/0"):
                rate = s["r_frame_rate"]
            return int(s["width"]), int(s["height"]), str(rate)
    raise MediaError("no video stream")


def probe_stream(pieces: Iterable[bytes], fifo: Path) -> dict[str, Any]:
    """Probe media that exists only as a stream of plaintext: fed into a FIFO ffprobe opens.

    Plaintext never lands in a file; `fifo` is created (mode 0600) and removed here.
    """
    fifo.parent.mkdir(parents=True, exist_ok=True)
    os.mkfifo(fifo, 0o600)

    errors: list[BaseException] = []

    def feed() -> None:
        try:
            with open(fifo, "wb") as f:  # blocks until ffprobe opens it
                for piece in pieces:
                    f.write(piece)
        except (BrokenPipeError, OSError):
            pass  # ffprobe has read what it needs and closed the FIFO
        except BaseException as e:  # a seal error while decrypting: the caller's to report
            errors.append(e)

    t = threading.Thread(target=feed, daemon=True)
    t.start()
    try:
        data = probe_raw(fifo)
    finally:
        with contextlib.suppress(OSError):  # unblock a feeder whose reader never came
            os.close(os.open(fifo, os.O_RDONLY | os.O_NONBLOCK))
        t.join(30)
        fifo.unlink(missing_ok=True)
        if errors:
            raise errors[0]
    return data


# -- commands composed with ffmpeg-python ------------------------------------------------------


def _compile(stream: Any, *extra: str) -> list[str]:
    """The command line: global options first (ffmpeg-python would append them after the output)."""
    return [require("ffmpeg"), *_QUIET, *extra, *(str(a) for a in stream.get_args())]


def thumbnail_command(width: int) -> list[str]:
    """First keyframe of stdin, scaled to `width`, as one JPEG on stdout."""
    stream = ffmpeg.input("pipe:0", skip_frame="nokey").filter("scale", width, -2)
    return _compile(stream.output("pipe:1", vframes=1, f="image2", vcodec="mjpeg"))


def decode_raw_command(width: int, height: int, rate: str) -> list[str]:
    """Decode stdin to raw BGR frames of one geometry and rate on stdout (redaction's input)."""
    stream = ffmpeg.input("pipe:0").video.filter("scale", width, height).filter("fps", rate)
    return _compile(stream.output("pipe:1", f="rawvideo", pix_fmt="bgr24"))


def encode_h264_command(width: int, height: int, rate: str, out: Path) -> list[str]:
    """Encode raw BGR frames from stdin as H.264 in a faststart MP4 at `out`."""
    stream = ffmpeg.input("pipe:0", f="rawvideo", pix_fmt="bgr24", s=f"{width}x{height}", r=rate)
    stream = stream.output(
        str(out),
        vcodec="libx264",
        preset="veryfast",
        crf=18,
        pix_fmt="yuv420p",
        movflags="+faststart",
        f="mp4",
    )
    return _compile(stream, "-y")


def concat_command(listing: Path, out: Path, start: datetime) -> list[str]:
    """Stream-copy the files of a concat list into one faststart MP4 carrying `start`."""
    stream = ffmpeg.input(str(listing), f="concat", safe=0).output(
        str(out), c="copy", metadata=f"creation_time={_iso(start)}", movflags="+faststart"
    )
    return _compile(stream, "-y")


def _iso(t: datetime) -> str:
    return t.astimezone(UTC).isoformat().replace("+00:00", "Z")


# -- running -----------------------------------------------------------------------------------


def thumbnail(pieces: Callable[[], Iterable[bytes]], width: int = 320, timeout: float = 30.0) -> bytes:
    """A JPEG of the first keyframe of the plaintext `pieces()` yields, fed on ffmpeg's stdin."""
    proc = subprocess.Popen(
        thumbnail_command(width), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    stdin: IO[bytes] = proc.stdin  # type: ignore[assignment]

    def feed() -> None:
        try:
            for piece in pieces():
                stdin.write(piece)
        except (BrokenPipeError, OSError, ValueError):
            pass  # ffmpeg has its frame and closed the pipe
        finally:
            with contextlib.suppress(OSError, ValueError):
                stdin.close()

    t = threading.Thread(target=feed, daemon=True)
    t.start()
    timer = threading.Timer(timeout, proc.kill)
    timer.start()
    try:
        out = proc.stdout.read()  # type: ignore[union-attr]
        err = proc.stderr.read()  # type: ignore[union-attr]
        proc.wait()
    finally:
        timer.cancel()
        t.join(5)
    if proc.returncode != 0 or not out:
        raise MediaError(f"ffmpeg could not decode it: {err.decode(errors='replace')[-200:]}")
    return out


# -- joining fragmented MP4 --------------------------------------------------------------------


def _box(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I4s", 8 + len(payload), kind) + payload


def _children(buf: bytearray, box: mp4.Box) -> list[mp4.Box]:
    """Child boxes of `box` (which lies in `buf`), their offsets absolute in `buf`."""
    return list(mp4.iter_boxes(buf, box.offset + box.header_size, box.offset + box.size))


def _joined_init(init: mp4.InitSegment) -> bytearray:
    """ftyp + moov of the first segment, with a mehd (fragment duration) added to mvex."""
    head, moov = b"", None
    for box in mp4.iter_boxes(init.data):
        if box.type == "moov":
            moov = box
        elif box.type == "ftyp":
            head += box.data
    if moov is None:
        raise NotJoinable("init section without moov")
    children, has_mvex = [], False
    for child in mp4.iter_boxes(moov.data, moov.header_size):
        data = child.data
        if child.type == "mvex":
            has_mvex = True
            rest = b"".join(c.data for c in mp4.iter_boxes(data, child.header_size) if c.type != "mehd")
            data = _box(b"mvex", _box(b"mehd", b"\x01\x00\x00\x00" + bytes(8)) + rest)
        children.append(data)
    if not has_mvex:
        raise NotJoinable("init section without mvex: not a fragmented MP4")
    return bytearray(head + _box(b"moov", b"".join(children)))


def _set_times(buf: bytearray, start: datetime, ends: dict[int, int], primary: int) -> None:
    """Creation time and durations in the init section `buf`, in place (every field keeps its size).

    ffprobe reports mvhd's creation time as the file's `creation_time`; a player reading the
    file from a pipe knows its duration only from mvhd/mehd and each track's tkhd/mdhd.
    """
    created = int(start.timestamp()) + MP4_EPOCH_OFFSET
    moov = next((b for b in mp4.iter_boxes(buf) if b.type == "moov"), None)
    if moov is None:
        raise NotJoinable("init section without moov")
    boxes = _children(buf, moov)
    mvhd = next((b for b in boxes if b.type == "mvhd"), None)
    if mvhd is None:
        raise NotJoinable("init section without mvhd")
    scale_at = mvhd.offset + mvhd.header_size + (20 if buf[mvhd.offset + mvhd.header_size] == 1 else 12)
    movie_scale = struct.unpack_from(">I", buf, scale_at)[0] or 1000
    scales: dict[int, int] = {}
    for trak in (b for b in boxes if b.type == "trak"):
        for sub in _children(buf, trak):
            if sub.type == "mdia":
                for mdhd in (m for m in _children(buf, sub) if m.type == "mdhd"):
                    h = mdhd.offset + mdhd.header_size
                    scales[trak.offset] = struct.unpack_from(">I", buf, h + (20 if buf[h] == 1 else 12))[0]
    movie = 0
    if primary in ends and scales:
        movie = round(Fraction(ends[primary]) * movie_scale / _scale_of(buf, boxes, primary, scales))

    def put(box: mp4.Box, times_at: int, duration_at: int, duration: int) -> None:
        h = box.offset + box.header_size
        if buf[h] == 1:
            struct.pack_into(">QQ", buf, h + 4, created, created)
            struct.pack_into(">Q", buf, h + duration_at + 8, duration)
        else:
            struct.pack_into(">II", buf, h + 4, created & 0xFFFFFFFF, created & 0xFFFFFFFF)
            struct.pack_into(">I", buf, h + duration_at, min(duration, 0xFFFFFFFF))

    put(mvhd, 4, 16, movie)
    for box in boxes:
        if box.type == "mvex":
            for mehd in (m for m in _children(buf, box) if m.type == "mehd"):
                struct.pack_into(">Q", buf, mehd.offset + mehd.header_size + 4, movie)
        elif box.type == "trak":
            tid = _track_id(buf, box)
            track_end = ends.get(tid, 0)
            for sub in _children(buf, box):
                if sub.type == "tkhd":
                    scale = scales.get(box.offset) or 1
                    put(sub, 4, 20, round(Fraction(track_end) * movie_scale / scale))
                elif sub.type == "mdia":
                    for mdhd in (m for m in _children(buf, sub) if m.type == "mdhd"):
                        put(mdhd, 4, 16, track_end)


def _track_id(buf: bytearray, trak: mp4.Box) -> int:
    for sub in _children(buf, trak):
        if sub.type == "tkhd":
            h = sub.offset + sub.header_size
            return int(struct.unpack_from(">I", buf, h + (20 if buf[h] == 1 else 12))[0])
    raise NotJoinable("trak without tkhd")


def _scale_of(buf: bytearray, boxes: list[mp4.Box], track: int, scales: dict[int, int]) -> int:
    for trak in (b for b in boxes if b.type == "trak"):
        if _track_id(buf, trak) == track:
            return scales.get(trak.offset) or 1
    return 1


def _layout(init: mp4.InitSegment) -> tuple[str, tuple[tuple[int, int | None, int | None], ...]]:
    """What must match for two segments' fragments to play under one init section."""
    trex = tuple(
        (t.track_id, t.default_sample_duration, t.default_sample_flags) for t in init.tracks.values()
    )
    return init.init_signature, trex


@dataclass
class Joined:
    fragments: int
    seconds: float


#: Boxes a segment may carry that the joined file does without (indexes of the old file).
_DROPPED = {b"free", b"skip", b"sidx", b"mfra", b"prft", b"styp", b"emsg"}
#: Boxes read whole into memory (init sections, fragment headers); an mdat is never buffered.
_MAX_HEADER_BOX = 16 << 20


class _Joiner:
    """State across a run's segments: the first init section, per-track end times, the output."""

    def __init__(self, out: BinaryIO, start: datetime, seconds: float) -> None:
        self.out, self.start, self.seconds = out, start, seconds
        self.init: mp4.InitSegment | None = None
        self.layout: tuple[str, Any] | None = None
        self.defaults: dict[int, int | None] = {}
        self.run_end: dict[int, int] = {}
        self.sequence = 0

    def emit(self, data: bytes | bytearray | memoryview) -> None:
        self.out.write(data)

    def on_init(self, data: bytes) -> None:
        try:
            init = mp4.parse_init(data)
        except mp4.Mp4Error as e:
            raise NotJoinable(f"unreadable init section: {e}") from None
        if self.init is None:
            self.init, self.layout = init, _layout(init)
            self.defaults = {t.track_id: t.default_sample_duration for t in init.tracks.values()}
            header = _joined_init(init)
            ends = {t.track_id: round(Fraction(self.seconds) * t.timescale) for t in init.tracks.values()}
            _set_times(header, self.start, ends, init.primary.track_id)
            self.emit(header)
        elif _layout(init) != self.layout:
            raise NotJoinable("the stream's parameters change within the run")

    def on_moof(self, buf: bytearray, seg: _Segment) -> tuple[bytearray, dict[int, int]]:
        """The moof (`buf`, changed in place) renumbered and its decode times moved on; and
        the track ends it reaches."""
        if self.init is None:
            raise NotJoinable("fragment before any init section")
        try:
            sequence_at, times = mp4.moof_times(buf, self.defaults)
        except mp4.Mp4Error as e:
            raise NotJoinable(f"unreadable fragment: {e}") from None
        struct.pack_into(">I", buf, sequence_at, self.sequence + 1)
        primary = self.init.primary
        if seg.start is None:
            seg.start = Fraction(self.run_end.get(primary.track_id, 0), primary.timescale)
        ends: dict[int, int] = {}
        for t in times:
            if t.track_id not in seg.shift:
                scale = self.init.tracks[t.track_id].timescale
                at = max(round(seg.start * scale), self.run_end.get(t.track_id, 0))
                seg.shift[t.track_id] = at - t.decode_time
            value = t.decode_time + seg.shift[t.track_id]
            if t.version == 1:
                struct.pack_into(">Q", buf, t.offset, value)
            elif value < 2**32:
                struct.pack_into(">I", buf, t.offset, value)
            else:
                raise NotJoinable("32-bit decode times overflow over the run")
            ends[t.track_id] = value + t.duration
        return buf, ends

    def commit(self, ends: dict[int, int]) -> None:
        self.sequence += 1
        for tid, end in ends.items():
            self.run_end[tid] = max(self.run_end.get(tid, 0), end)


@dataclass
class _Segment:
    start: Fraction | None = None
    shift: dict[int, int] = field(default_factory=dict)


def join_fragmented(
    segments: Iterable[tuple[int, Iterable[bytes]]], out: BinaryIO, start: datetime, seconds: float
) -> Joined:
    """Write one fragmented MP4 to `out` from the plaintext of a run's segments, in one pass.

    `segments` yields, per segment in time order, its plaintext size and an iterable of its
    plaintext pieces. The first init section is written once, with creation time `start` and
    duration `seconds` (the index's; a player reading from a pipe shows it). Every fragment
    follows with its tfdt shifted so each segment starts where the previous one ended (per
    track, never backwards) and mfhd sequence numbers counting up. mdat payloads pass straight
    from the pieces to `out`, never buffered; a fragment a segment cut short does not hold whole
    is dropped, as a player would. `out` sees every byte once, in order (hash it there: the
    buffers it is given are not changed afterwards). Raises NotJoinable; the caller then
    discards `out`.
    """
    j = _Joiner(out, start, seconds)
    for size, pieces in segments:
        _join_segment(j, size, pieces)
    if j.init is None or j.sequence == 0:
        raise NotJoinable("no fragments to join")
    primary = j.init.primary
    return Joined(j.sequence, j.run_end.get(primary.track_id, 0) / primary.timescale)


def _join_segment(j: _Joiner, size: int, pieces: Iterable[bytes]) -> None:
    """One segment's boxes: init collected, moofs patched, mdat payloads passed through."""
    seg = _Segment()
    pos = 0  # stream offset of the next byte
    head = bytearray()  # a box header, or a whole small box, being collected
    want = 8  # bytes `head` must reach
    kind = b""
    init = bytearray()  # ftyp + moov before the first fragment
    moof: tuple[bytearray, dict[int, int]] | None = None
    passing = 0  # mdat payload bytes still to pass through
    skipping = 0  # bytes of a dropped box (or a cut-short tail) still to skip
    for piece in pieces:
        view = memoryview(piece)
        i, n = 0, len(view)
        while i < n:
            if passing:
                take = min(passing, n - i)
                j.emit(view[i : i + take])
                passing -= take
            elif skipping:
                take = min(skipping, n - i)
                skipping -= take
            else:
                take = min(want - len(head), n - i)
                head += view[i : i + take]
            i += take
            pos += take
            if passing or skipping or len(head) < want:
                continue
            if not kind:  # the header is complete
                box_size, kind = struct.unpack_from(">I4s", head)
                if box_size == 1:
                    if want == 8:
                        want = 16
                        kind = b""
                        continue
                    box_size = struct.unpack_from(">Q", head, 8)[0]
                if box_size < len(head):
                    raise NotJoinable(f"box {kind!r} at {pos - len(head)} has size {box_size}")
                box_start = pos - len(head)
                if box_start + box_size > size:  # cut short inside this box: drop it and the rest
                    skipping, head, kind, want = size - pos, bytearray(), b"", 8
                    moof = None
                    continue
                if kind == b"mdat":
                    if moof is None:
                        raise NotJoinable("mdat without a moof before it")
                    j.emit(moof[0])
                    j.emit(head)
                    j.commit(moof[1])
                    moof, passing = None, box_size - len(head)
                    head, kind, want = bytearray(), b"", 8
                    continue
                if kind in _DROPPED:
                    skipping, head, kind, want = box_size - len(head), bytearray(), b"", 8
                    continue
                if box_size > _MAX_HEADER_BOX:
                    raise NotJoinable(f"{kind!r} box of {box_size} bytes")
                want = box_size
                if len(head) < want:
                    continue
            box, this = head, kind  # a fresh `head` follows: the moof is patched in place
            head, kind, want = bytearray(), b"", 8
            if this in (b"ftyp", b"moov"):
                init += box
                if this == b"moov":
                    j.on_init(bytes(init))
                    init = bytearray()
            elif this == b"moof":
                moof = j.on_moof(box, seg)
            else:
                raise NotJoinable(f"top-level {this!r} box outside a fragment")


def count_frames(path: Path) -> int:
    """Video frames ffmpeg decodes from `path` (counting, not trusting the container)."""
    data = probe_raw(path, select_streams="v:0", count_frames=None, show_entries="stream=nb_read_frames")
    return int(data["streams"][0]["nb_read_frames"])
