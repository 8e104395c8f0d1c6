"""vault.media.tools: a recording run's fragmented MP4 segments joined box by box, checked by ffmpeg.

The segments are made by ffmpeg as the recorder's ffmpeg writes them (fragmented, one init
section each, decode times restarting at 0 after a reconnect); the joined file must decode with
no error in ffmpeg, hold every frame of every segment, and carry the run's start and duration.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.support.media import FFMPEG, make_fmp4, requires_ffmpeg
from vault.media import tools

pytestmark = requires_ffmpeg

START = datetime(2026, 11, 21, 8, 0, 35, tzinfo=UTC)


def pieces(path: Path, size: int = 65536) -> Iterator[bytes]:
    """A file's bytes in pieces, as a segment reader yields plaintext (boxes span pieces)."""
    data = path.read_bytes()
    for i in range(0, len(data), size):
        yield data[i : i + size]


def frames(path: Path) -> int:
    return tools.count_frames(path)


def test_joined_run_decodes_every_frame_with_continuous_time(tmp_path: Path) -> None:
    segs = [make_fmp4(tmp_path / f"s{i}.mp4", 2.0, 320, 240, gop=25, audio=True) for i in range(3)]
    out = tmp_path / "run.mp4"
    with open(out, "wb") as f:
        joined = tools.join_fragmented(((s.stat().st_size, pieces(s, 4099)) for s in segs), f, START, 6.0)
    lengths = [float(tools.probe_raw(s, select_streams="v:0")["streams"][0]["duration"]) for s in segs]
    assert abs(joined.seconds - sum(lengths)) < 0.01
    # An outside tool decodes the whole file without one error line.
    decoded = subprocess.run(
        [FFMPEG, "-nostdin", "-v", "error", "-i", str(out), "-f", "null", "-"],
        capture_output=True,
        check=True,
    )
    assert decoded.stderr == b""
    assert frames(out) == sum(frames(s) for s in segs) == 150
    # Decode times run on: each segment starts where the previous one ended (they restart at 0).
    dts = subprocess.run(
        ["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries", "packet=dts_time",
         "-of", "csv=p=0", str(out)],
        capture_output=True, check=True, text=True,
    ).stdout.split()  # fmt: skip
    times = [float(t) for t in dts]
    assert times == sorted(times) and len(set(times)) == len(times)
    assert abs(times[-1] - (sum(lengths) - 1 / 25)) < 0.05
    # Start and duration are in the file's own header, readable even from a pipe.
    info = tools.probe_raw(out)
    assert info["format"]["tags"]["creation_time"].startswith("2026-11-21T08:00:35")
    piped = subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0", "pipe:0"],
        input=out.read_bytes(), capture_output=True, check=True,
    )  # fmt: skip
    assert abs(float(piped.stdout) - sum(lengths)) < 0.2


def test_a_change_of_stream_parameters_is_not_joined(tmp_path: Path) -> None:
    a = make_fmp4(tmp_path / "a.mp4", 1.0, 320, 240, gop=25)
    b = make_fmp4(tmp_path / "b.mp4", 1.0, 640, 480, gop=25)
    with open(tmp_path / "run.mp4", "wb") as f, pytest.raises(tools.NotJoinable, match="parameters change"):
        tools.join_fragmented([(a.stat().st_size, pieces(a)), (b.stat().st_size, pieces(b))], f, START, 2.0)


def test_a_plain_mp4_is_not_joined(tmp_path: Path) -> None:
    plain = tmp_path / "plain.mp4"
    subprocess.run(
        [FFMPEG, "-nostdin", "-v", "error", "-f", "lavfi", "-i", "testsrc=size=160x120:rate=10:duration=1",
         "-c:v", "libx264", "-preset", "ultrafast", str(plain)],
        check=True,
    )  # fmt: skip
    with open(tmp_path / "run.mp4", "wb") as f, pytest.raises(tools.NotJoinable):
        tools.join_fragmented([(plain.stat().st_size, pieces(plain))], f, START, 1.0)


def test_commands_are_composed_with_ffmpeg_python() -> None:
    cmd = tools.decode_raw_command(320, 240, "25/1")
    assert cmd[cmd.index("-filter_complex") + 1] == "[0:v]scale=320:240[s0];[s0]fps=25/1[s1]"
    assert cmd[1:5] == ["-nostdin", "-hide_banner", "-loglevel", "error"]
    thumb = tools.thumbnail_command(160)
    assert "[0]scale=160:-2[s0]" in thumb and thumb[-1] == "pipe:1"


def test_thumbnail_from_a_stream(tmp_path: Path) -> None:
    seg = make_fmp4(tmp_path / "s.mp4", 1.0, 320, 240, gop=25)
    jpeg = tools.thumbnail(lambda: pieces(seg), width=160)
    assert jpeg[:3] == b"\xff\xd8\xff"
    with pytest.raises(tools.MediaError, match="could not decode"):
        tools.thumbnail(lambda: iter([b"not media at all" * 100]))


def test_probe_stream_reads_a_fifo(tmp_path: Path) -> None:
    seg = make_fmp4(tmp_path / "s.mp4", 1.0, 320, 240, gop=25)
    info = tools.probe_stream(pieces(seg), tmp_path / "probe.fifo")
    assert tools.video_geometry(info) == (320, 240, "25/1")
    assert not (tmp_path / "probe.fifo").exists()


def test_a_segment_cut_short_loses_only_its_last_fragment(tmp_path: Path) -> None:
    whole = make_fmp4(tmp_path / "a.mp4", 2.0, 320, 240, gop=25)
    data = whole.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) - 500])  # inside the last fragment's mdat
    out = tmp_path / "run.mp4"
    with open(out, "wb") as f:
        tools.join_fragmented([(len(data) - 500, pieces(cut)), (len(data), pieces(whole))], f, START, 4.0)
    decoded = subprocess.run(
        [FFMPEG, "-nostdin", "-v", "error", "-i", str(out), "-f", "null", "-"],
        capture_output=True,
        check=True,
    )
    assert decoded.stderr == b""
    assert frames(out) == 2 * frames(whole) - 25  # the cut fragment (one GOP) is gone, nothing else
