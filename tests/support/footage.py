"""Footage for API tests: fragmented MP4 segments made by ffmpeg (lavfi testsrc), sealed and ingested."""

from __future__ import annotations

import subprocess
from datetime import datetime, timedelta
from pathlib import Path

from tests.support.appliance import Appliance
from vault.timeutil import iso


def make_fmp4(out: Path, seconds: float, size: str = "320x240", rate: int = 25, offset: float = 0.0) -> Path:
    """A standalone fragmented MP4 (ftyp+moov, then moof/mdat per keyframe), as the recorder writes."""
    subprocess.run(
        [
            "ffmpeg",
            "-nostdin",
            "-hide_banner",
            "-loglevel",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
            f"testsrc=size={size}:rate={rate}",
            "-ss",
            str(offset),
            "-t",
            str(seconds),
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-pix_fmt",
            "yuv420p",
            "-g",
            str(rate),
            "-bf",
            "0",
            "-movflags",
            "+frag_keyframe+empty_moov+default_base_moof",
            "-f",
            "mp4",
            str(out),
        ],
        check=True,
        timeout=120,
    )
    return out


def record(
    app: Appliance,
    source: str,
    start: datetime,
    count: int,
    seconds: float = 10.0,
    gap_after: dict[int, float] | None = None,
    gap_reason: str = "camera offline",
) -> list[datetime]:
    """Seal `count` segments of `seconds` each via `holdfast seal`, optionally with gaps; then ingest."""
    from vault.store.spool import write_gap

    work = app.dir / "media"
    work.mkdir(exist_ok=True)
    clip = make_fmp4(work / f"clip-{seconds}.mp4", seconds)
    t = start
    starts = []
    for i in range(count):
        app.cli("seal", "--source", source, "--start", iso(t), "--duration", str(seconds), str(clip))
        starts.append(t)
        t = t + timedelta(seconds=seconds)
        if gap_after and i in gap_after:
            g_end = t + timedelta(seconds=gap_after[i])
            write_gap(app.cfg.paths.spool, source, t, g_end, gap_reason)
            t = g_end
    app.cli("ingest", "--once")
    return starts
