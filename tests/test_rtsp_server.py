"""The RTSP test server itself: what later recorder tests rely on, checked with ffprobe."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import RtspServerFactory
from tests.support.media import FFPROBE, make_h264_annexb, requires_ffmpeg
from tests.support.rtsp import RtspServer, port_open

pytestmark = [pytest.mark.slow, requires_ffmpeg]


def ffprobe(url: str, timeout: float = 20) -> subprocess.CompletedProcess[str]:
    """ffprobe an RTSP URL over TCP (how the recorder connects) and return the result."""
    return subprocess.run(
        [FFPROBE, "-v", "error", "-rtsp_transport", "tcp", "-show_streams", "-of", "json", url],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def video_stream(result: subprocess.CompletedProcess[str]) -> dict[str, object]:
    assert result.returncode == 0, result.stderr
    streams = json.loads(result.stdout)["streams"]
    assert len(streams) == 1
    return streams[0]


def test_serves_1080p_h264_on_each_mount(rtsp_server: RtspServer) -> None:
    for mount in ("/office-1", "/garage-1"):
        s = video_stream(ffprobe(rtsp_server.url(mount)))
        assert (s["codec_name"], s["width"], s["height"]) == ("h264", 1920, 1080)
        assert s["r_frame_rate"] == "25/1"


def test_unknown_mount_is_404(rtsp_server: RtspServer) -> None:
    r = ffprobe(rtsp_server.url("/nope"))
    assert r.returncode != 0
    assert "404" in r.stderr


@pytest.mark.parametrize("method", ["digest", "basic"])
def test_auth_rejects_wrong_and_missing_credentials(
    rtsp_server_factory: RtspServerFactory, method: str
) -> None:
    server = rtsp_server_factory(
        ["/office-1"],
        width=320,
        height=240,
        pattern="ball",
        user="alice",
        password="s3 cr/et",
        auth=method,
    )
    s = video_stream(ffprobe(server.url("/office-1")))
    assert (s["width"], s["height"]) == (320, 240)
    wrong = ffprobe(server.url("/office-1", credentials=("alice", "wrong")))
    assert wrong.returncode != 0 and "401" in wrong.stderr
    missing = ffprobe(server.url("/office-1", credentials=False))
    assert missing.returncode != 0 and "401" in missing.stderr


def test_restart_and_stop(rtsp_server_factory: RtspServerFactory) -> None:
    server = rtsp_server_factory(["/cam"], width=320, height=240, pattern="ball")
    port = server.port
    assert server.stop() == 0  # SIGTERM is a clean exit
    assert not port_open(port)
    server.start()
    assert server.port == port
    server.restart(down_for=0.2)
    assert server.port == port and server.running
    s = video_stream(ffprobe(server.url()))
    assert s["width"] == 320


def test_file_mode_loops_in_real_time(rtsp_server_factory: RtspServerFactory, tmp_path: Path) -> None:
    src = make_h264_annexb(tmp_path / "loop.h264", 2, width=640, height=360, fps=25, gop=25)
    server = rtsp_server_factory(["/bench-1"], file=str(src), fps=25)
    out = tmp_path / "pulled.mp4"
    t0 = time.monotonic()
    subprocess.run(
        [
            "ffmpeg",
            "-nostdin",
            "-v",
            "error",
            "-rtsp_transport",
            "tcp",
            "-i",
            server.url(),
            "-t",
            "5",
            "-c",
            "copy",
            "-y",
            str(out),
        ],
        check=True,
        timeout=30,
    )
    elapsed = time.monotonic() - t0
    # 5 s of a 2 s file: it looped, with monotonic timestamps, paced by the clock not the disk.
    assert elapsed >= 4.5
    s = video_stream(ffprobe(str(out)))
    assert (s["width"], s["height"]) == (640, 360)
    assert int(s["nb_frames"]) >= 120
