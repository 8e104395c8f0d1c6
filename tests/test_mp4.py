"""vault.media.mp4 against real ffmpeg output (generated per session, never committed)."""

from __future__ import annotations

import os
import signal
import struct
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.media import (
    FFMPEG,
    FMP4_MOVFLAGS,
    keyframe_times,
    make_audio_fmp4,
    make_fmp4,
    probe_duration,
    requires_ffmpeg,
)
from tests.support.rtsp import RtspServer
from vault.media.mp4 import (
    Box,
    BoxReader,
    BoxTooLargeError,
    Fragment,
    FragmentedMp4Reader,
    InitSegment,
    Mp4Error,
    parse_init,
)

pytestmark = requires_ffmpeg

FPS = 25
FRAME = 1 / FPS


@dataclass(frozen=True)
class Media:
    path: Path
    data: bytes


@pytest.fixture(scope="session")
def media_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("mp4")


def _media(path: Path) -> Media:
    return Media(path, path.read_bytes())


@pytest.fixture(scope="session")
def hd(media_dir: Path) -> Media:
    """1080p25, GOP 50, frag_keyframe: one fragment per 2 s GOP, as from a camera."""
    return _media(make_fmp4(media_dir / "hd.mp4", 6, 1920, 1080, FPS, 50))


@pytest.fixture(scope="session")
def small(media_dir: Path) -> Media:
    """320x240, 4 s: cheap input for property tests."""
    return _media(make_fmp4(media_dir / "small.mp4", 4, 320, 240, FPS, 50))


@pytest.fixture(scope="session")
def fragdur(media_dir: Path) -> Media:
    """-frag_duration 0.5 s with a 2 s GOP: most fragments start mid-GOP."""
    path = make_fmp4(media_dir / "fragdur.mp4", 6, 320, 240, FPS, 50, frag_duration_us=500_000)
    return _media(path)


@pytest.fixture(scope="session")
def av(media_dir: Path) -> Media:
    """1080p video + AAC audio."""
    return _media(make_fmp4(media_dir / "av.mp4", 6, 1920, 1080, FPS, 50, audio=True))


def read_all(data: bytes, chunks: list[int] | None = None) -> list[InitSegment | Fragment | Box]:
    """Feed ``data`` whole, or in the given chunk sizes (cycled)."""
    reader = FragmentedMp4Reader()
    if chunks is None:
        items = reader.feed(data)
    else:
        items, pos, i = [], 0, 0
        while pos < len(data):
            n = chunks[i % len(chunks)]
            items += reader.feed(data[pos : pos + n])
            pos += n
            i += 1
    assert not reader.pending
    return items


def fragments(items: list[InitSegment | Fragment | Box]) -> list[Fragment]:
    return [x for x in items if isinstance(x, Fragment)]


def inits(items: list[InitSegment | Fragment | Box]) -> list[InitSegment]:
    return [x for x in items if isinstance(x, InitSegment)]


def top_level_boxes(data: bytes, chunks: list[int]) -> list[tuple[str, int, bytes]]:
    reader = BoxReader()
    out: list[tuple[str, int, bytes]] = []
    pos, i = 0, 0
    while pos < len(data):
        n = chunks[i % len(chunks)]
        out += [(b.type, b.offset, b.data) for b in reader.feed(data[pos : pos + n])]
        pos += n
        i += 1
    assert reader.at_boundary()
    return out


# --- BoxReader -------------------------------------------------------------------------------


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(chunks=st.lists(st.integers(min_value=1, max_value=40_000), min_size=1, max_size=20))
def test_random_chunking_gives_the_same_boxes(small: Media, chunks: list[int]) -> None:
    whole = top_level_boxes(small.data, [len(small.data)])
    assert [t for t, _, _ in whole][:2] == ["ftyp", "moov"]
    assert b"".join(d for _, _, d in whole) == small.data
    assert top_level_boxes(small.data, chunks) == whole


def test_byte_by_byte_feeding(small: Media) -> None:
    items = read_all(small.data, [1])
    assert [type(x).__name__ for x in items] == [type(x).__name__ for x in read_all(small.data)]


def test_truncated_stream_yields_no_partial_box(small: Media) -> None:
    whole = top_level_boxes(small.data, [len(small.data)])
    for cut in (1, 7, 8, 20, 500, len(small.data) // 3, len(small.data) - 1):
        reader = BoxReader()
        got = reader.feed(small.data[:cut])
        assert all(b.offset + b.size <= cut for b in got)
        assert [(b.type, b.offset, b.data) for b in got] == whole[: len(got)]
        assert reader.offset + reader.buffered == cut
        assert reader.at_boundary() == (reader.offset == cut)


def test_garbage_box_size_raises_explicit_error(small: Media) -> None:
    init_end = sum(len(d) for t, _, d in top_level_boxes(small.data, [10**9])[:2])
    reader = BoxReader()
    reader.feed(small.data[:init_end])
    with pytest.raises(BoxTooLargeError, match=rf"'mdat' at offset {init_end}"):
        reader.feed(struct.pack(">I4s", 0x7FFFFFF0, b"mdat"))
    with pytest.raises(BoxTooLargeError):  # the stream position is lost: keep failing
        reader.feed(b"more")

    for bad, match in [
        (struct.pack(">I4s", 3, b"moof"), "smaller than its header"),
        (struct.pack(">I4sQ", 1, b"mdat", 9), "64-bit box size 9"),
        (struct.pack(">I4s", 0, b"mdat"), "size 0"),
        (struct.pack(">I4s", 100, b"\x00\x01\xff\x02"), "not a four-character code"),
    ]:
        with pytest.raises(Mp4Error, match=match):
            BoxReader().feed(bad)


def test_max_box_size_is_configurable(hd: Media) -> None:
    with pytest.raises(BoxTooLargeError, match=r"exceeds the limit of 100000 bytes \(box 'mdat'"):
        FragmentedMp4Reader(max_box_size=100_000).feed(hd.data)


def test_64_bit_largesize_box() -> None:
    payload = os.urandom(1000)
    large = struct.pack(">I4sQ", 1, b"mdat", 16 + len(payload)) + payload
    small_box = struct.pack(">I4s", 12, b"free") + b"abcd"
    reader = BoxReader()
    got = reader.feed(large[:10]) + reader.feed(large[10:] + small_box[:3]) + reader.feed(small_box[3:])
    assert [(b.type, b.size, b.header_size) for b in got] == [("mdat", 1016, 16), ("free", 12, 8)]
    assert got[0].payload == payload
    assert got[1].offset == 1016


def test_reader_memory_stays_bounded_to_one_box(hd: Media) -> None:
    biggest = max(len(d) for _, _, d in top_level_boxes(hd.data, [len(hd.data)]))
    reader = BoxReader()
    for pos in range(0, len(hd.data), 4096):
        reader.feed(hd.data[pos : pos + 4096])
        assert reader.buffered < biggest + 4096
        assert len(reader._buf) <= 2 * reader.buffered  # consumed bytes are dropped promptly


# --- Init segment ------------------------------------------------------------------------------


def test_init_info_1080p(hd: Media) -> None:
    items = read_all(hd.data)
    assert isinstance(items[0], InitSegment)
    init = items[0]
    assert init.data[4:8] == b"ftyp" and hd.data.startswith(init.data)
    assert init.track_ids == [1]
    video = init.video
    assert video is not None and init.audio is None
    assert (video.handler, video.codec, video.width, video.height) == ("vide", "avc1", 1920, 1080)
    assert video.timescale > 0
    assert len(init.init_signature) == 64


def test_audio_and_video_tracks(av: Media) -> None:
    init = inits(read_all(av.data))[0]
    assert init.track_ids == [1, 2]
    video, audio = init.video, init.audio
    assert video is not None and audio is not None
    assert (video.codec, video.width, video.height) == ("avc1", 1920, 1080)
    # ffmpeg's mp4a sample entry always says 2 channels; the real count is inside esds.
    assert (audio.handler, audio.codec) == ("soun", "mp4a")
    assert audio.sample_rate == audio.timescale == 48000
    frags = fragments(read_all(av.data))
    assert all(set(f.tracks) == {1, 2} for f in frags)
    assert all(f.is_keyframe for f in frags)
    # Timing is the video track's; the audio runs alongside.
    assert sum(f.duration_seconds for f in frags) == pytest.approx(probe_duration(av.path), abs=FRAME)


def test_init_signature_tracks_codec_parameters(media_dir: Path, hd: Media, small: Media) -> None:
    again = make_fmp4(media_dir / "hd-again.mp4", 3, 1920, 1080, FPS, 50)
    sig = inits(read_all(hd.data))[0].init_signature
    assert inits(read_all(again.read_bytes()))[0].init_signature == sig
    assert inits(read_all(small.data))[0].init_signature != sig


def test_parse_init_needs_moov() -> None:
    with pytest.raises(Mp4Error, match="no moov"):
        parse_init(struct.pack(">I4s", 16, b"ftyp") + b"isom\x00\x00\x02\x00")


# --- Fragments ---------------------------------------------------------------------------------


def test_every_fragment_is_a_keyframe_with_frag_keyframe(hd: Media) -> None:
    frags = fragments(read_all(hd.data))
    assert len(frags) == 3
    assert [f.sequence_number for f in frags] == [1, 2, 3]
    assert all(f.is_keyframe for f in frags)
    assert [f.duration_seconds for f in frags] == pytest.approx([2.0, 2.0, 2.0], abs=FRAME)
    assert [f.decode_time_seconds for f in frags] == pytest.approx([0.0, 2.0, 4.0], abs=FRAME)
    assert all(f.data == f.moof.data + f.mdat.data and f.mdat.type == "mdat" for f in frags)


def test_frag_duration_fragments_start_mid_gop(fragdur: Media) -> None:
    frags = fragments(read_all(fragdur.data))
    keys = keyframe_times(fragdur.path)  # ffprobe is the oracle
    assert len(frags) > 6
    flags = [f.is_keyframe for f in frags]
    assert True in flags and False in flags
    for f in frags:
        starts_on_key = any(abs(f.decode_time_seconds - k) < FRAME / 2 for k in keys)  # type: ignore[operator]
        assert f.is_keyframe == starts_on_key, f
    assert sum(flags) == len(keys) == 3


@pytest.mark.parametrize("name", ["hd", "fragdur", "small"])
def test_durations_sum_to_file_duration(name: str, request: pytest.FixtureRequest) -> None:
    media: Media = request.getfixturevalue(name)
    frags = fragments(read_all(media.data))
    assert sum(f.duration_seconds for f in frags) == pytest.approx(probe_duration(media.path), abs=FRAME)
    # tfdt is continuous: each fragment starts where the previous one ended.
    for a, b in zip(frags, frags[1:], strict=False):
        assert b.decode_time_seconds == pytest.approx(a.decode_time_seconds + a.duration_seconds)


@pytest.mark.parametrize("codec,fourcc", [("libopus", "Opus"), ("aac", "mp4a")])
def test_audio_only_fragments(media_dir: Path, codec: str, fourcc: str) -> None:
    path = make_audio_fmp4(media_dir / f"audio-{codec}.mp4", 5, codec)
    items = read_all(path.read_bytes())
    init = inits(items)[0]
    assert init.video is None and init.audio is not None and init.audio.codec == fourcc
    assert init.audio.sample_rate == 48000
    if fourcc == "Opus":
        assert init.audio.channels == 1
    frags = fragments(items)
    assert len(frags) >= 5 and all(f.is_keyframe for f in frags)
    assert sum(f.duration_seconds for f in frags) == pytest.approx(probe_duration(path), abs=0.03)


def test_other_top_level_boxes_pass_through(hd: Media) -> None:
    items = read_all(hd.data)
    others = [x for x in items if isinstance(x, Box)]
    assert [b.type for b in others] == ["mfra"]  # ffmpeg's random-access index at the end
    rebuilt = b"".join(x.data for x in items)
    assert rebuilt == hd.data


def test_fragment_before_init_is_an_error(hd: Media) -> None:
    boxes = top_level_boxes(hd.data, [len(hd.data)])
    moof = next(d for t, _, d in boxes if t == "moof")
    with pytest.raises(Mp4Error, match="before any init segment"):
        FragmentedMp4Reader().feed(moof)


def test_malformed_trun_names_the_box(small: Media) -> None:
    data = bytearray(small.data)
    at = data.index(b"trun")  # sample_count lives 8 bytes after the type (version/flags first)
    struct.pack_into(">I", data, at + 8, 10_000_000)
    with pytest.raises(Mp4Error, match=r"'trun' at offset \d+"):
        read_all(bytes(data))


def test_new_init_segment_mid_stream(hd: Media, small: Media) -> None:
    """A camera changing resolution: ffmpeg restarts, a new init comes, signature differs."""
    reader = FragmentedMp4Reader()
    items = reader.feed(hd.data) + reader.feed(small.data)
    sigs = [i.init_signature for i in inits(items)]
    assert len(sigs) == 2 and sigs[0] != sigs[1]
    last = fragments(items)[-1]
    assert last.init.video is not None and last.init.video.width == 320


# --- Live, through the real RTSP server --------------------------------------------------------


@pytest.mark.slow
def test_live_ffmpeg_from_rtsp_server(rtsp_server: RtspServer) -> None:
    cmd = [FFMPEG, "-nostdin", "-hide_banner", "-loglevel", "error", "-rtsp_transport", "tcp",
           "-timeout", "5000000", "-i", rtsp_server.url("/office-1"), "-c", "copy", "-f", "mp4",
           "-movflags", FMP4_MOVFLAGS, "pipe:1"]  # fmt: skip
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None
    reader = FragmentedMp4Reader()
    items: list[InitSegment | Fragment | Box] = []
    first_init = first_fragment = None
    try:
        while time.monotonic() - t0 < 7.5:
            chunk = os.read(proc.stdout.fileno(), 65536)
            if not chunk:
                break
            for item in reader.feed(chunk):
                items.append(item)
                if isinstance(item, InitSegment) and first_init is None:
                    first_init = time.monotonic() - t0
                if isinstance(item, Fragment) and first_fragment is None:
                    first_fragment = time.monotonic() - t0
    finally:
        proc.send_signal(signal.SIGINT)  # one SIGINT: ffmpeg flushes the last fragment
        tail, err = proc.communicate(timeout=10)
    items += reader.feed(tail)
    assert not reader.pending, err
    init = inits(items)[0]
    assert init.video is not None
    assert (init.video.codec, init.video.width, init.video.height) == ("avc1", 1920, 1080)
    frags = fragments(items)
    assert len(frags) >= 2, err
    # GOP 50 at 25 fps with frag_keyframe: every fragment but the flushed tail is one GOP.
    assert all(f.is_keyframe for f in frags)
    durations = [round(f.duration_seconds, 3) for f in frags]
    assert all(abs(d - 2.0) <= FRAME + 1e-6 for d in durations[:-1]), durations
    print(
        f"\nlive RTSP -> fMP4: init after {first_init:.2f} s, first fragment after "
        f"{first_fragment:.2f} s, fragment durations {durations}"
    )
