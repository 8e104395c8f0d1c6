"""Media generated in tests with real ffmpeg (never committed)."""

from __future__ import annotations

import subprocess
from pathlib import Path


def make_fmp4(path: Path, seconds: float, size: str = "640x360", fps: int = 25, gop: int = 50) -> Path:
    """H.264 fragmented MP4 from lavfi testsrc, the shape a camera recorder produces."""
    subprocess.run(
        [
            "ffmpeg",
            "-nostdin",
            "-v",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
            f"testsrc=size={size}:rate={fps}",
            "-t",
            str(seconds),
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-g",
            str(gop),
            "-pix_fmt",
            "yuv420p",
            "-movflags",
            "+frag_keyframe+empty_moov+default_base_moof",
            str(path),
        ],
        check=True,
        timeout=120,
    )
    return path
