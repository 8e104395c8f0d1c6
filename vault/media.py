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
"""

from __future__ import annotations

import contextlib
import os
import shutil
import struct
import subprocess
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from fractions import Fraction
from pathlib import Path
from typing import IO, Any, BinaryIO

import ffmpeg

from vault import mp4
from vault.errors import HoldfastError

#: Seconds between 1904-01-01 (MP4's epoch) and 1970-01-01.
MP4_EPOCH_OFFSET = 2082844800
#: tfhd flag: the fragment addresses its samples by absolute file offsets (cannot be moved).
_TFHD_BASE_DATA_OFFSET = 0x000001
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


def join_fragmented(segments: Iterable[Iterable[bytes]], out: BinaryIO, start: datetime) -> Joined:
    """Write one fragmented MP4 to `out` (a seekable file) from the plaintext of each segment.

    `segments` yields, per segment in time order, an iterable of its plaintext pieces. The first
    init section is written once (creation time `start`); every fragment follows with its tfdt
    shifted so each segment starts where the previous one ended (per track, never backwards) and
    mfhd sequence numbers counting up. A trailing partial box of a segment cut short is dropped,
    as a player would. Raises NotJoinable before or while writing; the caller discards `out`.
    """
    layout: tuple[str, Any] | None = None
    header: bytearray | None = None
    timescales: dict[int, int] = {}
    primary = 0
    run_end: dict[int, int] = {}  # per track: where the next segment may start, in its timescale
    sequence = 0
    for pieces in segments:
        reader = mp4.FragmentedMp4Reader()
        shift: dict[int, int] = {}
        seg_start: Fraction | None = None
        try:
            for piece in pieces:
                for item in reader.feed(piece):
                    if isinstance(item, mp4.InitSegment):
                        if layout is None:
                            layout, header = _layout(item), _joined_init(item)
                            _set_times(header, start, {}, item.primary.track_id)
                            timescales = {t.track_id: t.timescale for t in item.tracks.values()}
                            primary = item.primary.track_id
                            out.write(header)
                        elif _layout(item) != layout:
                            raise NotJoinable("the stream's parameters change within the run")
                        continue
                    if not isinstance(item, mp4.Fragment):
                        if item.type in ("free", "skip", "sidx", "mfra", "prft", "styp", "emsg"):
                            continue  # indexes of the old file; nothing a player needs
                        raise NotJoinable(f"top-level {item.type} box outside a fragment")
                    if seg_start is None:
                        seg_start = Fraction(run_end.get(primary, 0), timescales[primary])
                    sequence += 1
                    moof = bytearray(item.moof.data)
                    _renumber(item.moof, moof, sequence)
                    fields = mp4.decode_time_fields(item.moof)
                    if len(fields) != len(item.tracks):
                        raise NotJoinable("a track fragment without tfdt (decode time)")
                    for f in fields:
                        scale = timescales[f.track_id]
                        if f.track_id not in shift:
                            at = max(round(seg_start * scale), run_end.get(f.track_id, 0))
                            shift[f.track_id] = at - f.value
                        value = f.value + shift[f.track_id]
                        at = f.offset - item.moof.offset
                        if f.version == 1:
                            struct.pack_into(">Q", moof, at, value)
                        elif value < 2**32:
                            struct.pack_into(">I", moof, at, value)
                        else:
                            raise NotJoinable("32-bit decode times overflow over the run")
                        run_end[f.track_id] = max(
                            run_end.get(f.track_id, 0), value + item.tracks[f.track_id].duration
                        )
                    out.write(moof)
                    out.write(item.mdat.data)
        except mp4.Mp4Error as e:
            raise NotJoinable(f"not a fragmented MP4 this join reads: {e}") from None
        if layout is None:
            raise NotJoinable("segment without an init section")
    if header is None or sequence == 0:
        raise NotJoinable("no fragments to join")
    seconds = Fraction(run_end.get(primary, 0), timescales[primary])
    _set_times(header, start, run_end, primary)
    end = out.tell()
    out.seek(0)
    out.write(header)
    out.seek(end)
    return Joined(sequence, float(seconds))


def _renumber(moof: mp4.Box, buf: bytearray, sequence: int) -> None:
    """Set mfhd's sequence number in `buf` (moof's bytes); refuse absolute data offsets."""
    for child in mp4.iter_boxes(moof.data, moof.header_size):
        if child.type == "mfhd":
            struct.pack_into(">I", buf, child.offset + child.header_size + 4, sequence)
        elif child.type == "traf":
            for sub in mp4.iter_boxes(child.data, child.header_size):
                if sub.type == "tfhd":
                    flags = struct.unpack_from(">I", sub.data, sub.header_size)[0] & 0xFFFFFF
                    if flags & _TFHD_BASE_DATA_OFFSET:
                        raise NotJoinable("fragments address samples by absolute file offset")


def count_frames(path: Path) -> int:
    """Video frames ffmpeg decodes from `path` (counting, not trusting the container)."""
    data = probe_raw(path, select_streams="v:0", count_frames=None, show_entries="stream=nb_read_frames")
    return int(data["streams"][0]["nb_read_frames"])
