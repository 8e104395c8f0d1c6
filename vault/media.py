"""ffprobe, for facts about media files that are already plaintext (imports, tests)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

from vault.errors import HoldfastError


class MediaError(HoldfastError):
    pass


def require(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        raise MediaError(
            f"{tool} not found on PATH (install Debian's ffmpeg package: apt-get install ffmpeg)"
        )
    return path


def probe(source: str | Path, timeout: float = 30.0) -> dict[str, Any]:
    """Duration, first video/audio stream facts; `source` may be a path or `pipe:0`-style URL."""
    cmd = [
        require("ffprobe"),
        "-v",
        "error",
        "-print_format",
        "json",
        "-show_format",
        "-show_streams",
        str(source),
    ]
    try:
        out = subprocess.run(cmd, capture_output=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise MediaError(f"ffprobe timed out on {source}") from None
    if out.returncode != 0:
        last = out.stderr.decode(errors="replace").strip().splitlines()[-1:] or ["?"]
        raise MediaError(f"ffprobe cannot read {source}: {last[0]}")
    data = json.loads(out.stdout)
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
