"""ffmpeg-based generators of real media for tests (never commit media; make it per test).

Why real ffmpeg output: the recorder parses what ffmpeg writes, so hand-made fixtures would
only test our own assumptions about the format.
"""

from __future__ import annotations

import shutil
import subprocess
from functools import partial
from pathlib import Path
from typing import Literal

import pytest

FFMPEG = shutil.which("ffmpeg") or "ffmpeg"
FFPROBE = shutil.which("ffprobe") or "ffprobe"

#: Skip marker for tests that need the ffmpeg binaries.
requires_ffmpeg = pytest.mark.skipif(
    shutil.which("ffmpeg") is None or shutil.which("ffprobe") is None,
    reason="ffmpeg/ffprobe not installed (apt-get install -y ffmpeg)",
)

FMP4_MOVFLAGS = "+frag_keyframe+empty_moov+default_base_moof"


def _run(cmd: list[str]) -> None:
    """Run ffmpeg and surface its stderr on failure (its exit code alone says nothing)."""
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"ffmpeg failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stderr}")


def _video_input(seconds: float, width: int, height: int, fps: int) -> list[str]:
    return [
        "-f",
        "lavfi",
        "-i",
        f"testsrc=size={width}x{height}:rate={fps}:duration={seconds}",
    ]


def _x264(gop: int, preset: str) -> list[str]:
    # No B-frames and a fixed GOP: like an IP camera, and makes keyframe positions predictable.
    return [
        "-c:v",
        "libx264",
        "-preset",
        preset,
        "-pix_fmt",
        "yuv420p",
        "-g",
        str(gop),
        "-keyint_min",
        str(gop),
        "-sc_threshold",
        "0",
        "-bf",
        "0",
    ]


def make_video(
    path: str | Path,
    seconds: float,
    width: int = 1920,
    height: int = 1080,
    fps: int = 25,
    gop: int = 50,
    *,
    fmt: Literal["mp4", "h264"],
    audio: bool = False,
    frag_duration_us: int | None = None,
    bitrate_kbps: int | None = None,
    preset: str = "ultrafast",
) -> Path:
    """Write H.264 video (lavfi testsrc): ``fmt`` "mp4" a fragmented MP4 as the recorder's ffmpeg
    writes it, "h264" a raw Annex-B stream (e.g. for ``rtsp_server.py --file``).

    ``audio`` adds an AAC sine track (MP4 only). ``frag_duration_us`` adds ``-frag_duration`` so
    fragments are also cut between keyframes (some then do not start with one).
    ``bitrate_kbps`` sets a camera-like constant bitrate (testsrc alone compresses very well).
    """
    if fmt == "h264" and (audio or frag_duration_us is not None):
        raise ValueError("a raw H.264 stream has no audio track and no fragments")
    path = Path(path)
    cmd = [FFMPEG, "-nostdin", "-hide_banner", "-loglevel", "error", "-y"]
    cmd += _video_input(seconds, width, height, fps)
    if audio:
        cmd += ["-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=48000:duration={seconds}"]
    cmd += _x264(gop, preset)
    if audio:
        cmd += ["-c:a", "aac", "-b:a", "64k"]
    if bitrate_kbps is not None:
        k = f"{bitrate_kbps}k"
        cmd += ["-b:v", k, "-minrate", k, "-maxrate", k, "-bufsize", k]
        cmd += ["-x264-params", "nal-hrd=cbr"]
    cmd += ["-t", str(seconds), "-f", fmt]
    if fmt == "mp4":
        cmd += ["-movflags", FMP4_MOVFLAGS]
    if frag_duration_us is not None:
        cmd += ["-frag_duration", str(frag_duration_us)]
    cmd.append(str(path))
    _run(cmd)
    return path


#: A fragmented MP4 as the recorder's ffmpeg writes it (see `make_video`).
make_fmp4 = partial(make_video, fmt="mp4")
#: A raw Annex-B H.264 stream, e.g. for a looping RTSP server (see `make_video`).
make_h264_annexb = partial(make_video, fmt="h264")


def probe_duration(path: str | Path) -> float:
    """Container duration in seconds according to ffprobe."""
    out = subprocess.run(
        [FFPROBE, "-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0", str(path)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    return float(out)


def make_audio_fmp4(
    path: str | Path,
    seconds: float,
    codec: str = "libopus",
    sample_rate: int = 48000,
    *,
    frag_duration_us: int = 1_000_000,
) -> Path:
    """Write an audio-only fragmented MP4 (sine), like a call recording: Opus or AAC."""
    path = Path(path)
    cmd = [FFMPEG, "-nostdin", "-hide_banner", "-loglevel", "error", "-y"]
    cmd += ["-f", "lavfi", "-i", f"sine=frequency=440:sample_rate={sample_rate}:duration={seconds}"]
    cmd += ["-c:a", codec, "-b:a", "32k", "-f", "mp4", "-movflags", FMP4_MOVFLAGS]
    cmd += ["-frag_duration", str(frag_duration_us), str(path)]
    _run(cmd)
    return path


def keyframe_times(path: str | Path) -> list[float]:
    """Decode timestamps (s) of the video packets ffprobe flags as keyframes: an oracle."""
    out = subprocess.run(
        [
            FFPROBE,
            "-v",
            "error",
            "-select_streams",
            "v:0",
            "-show_entries",
            "packet=dts_time,flags",
            "-of",
            "csv=p=0",
            str(path),
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    times = []
    for line in out.splitlines():
        dts, _, flags = line.partition(",")
        if "K" in flags:
            times.append(float(dts))
    return times
