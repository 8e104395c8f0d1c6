"""The recorder's wall clock: segments abut by media time, and re-anchor when the camera drifts.

Real fragments (ffmpeg's fragmented MP4, cut every 0.5 s as the recorder asks), fed to the real
`Segmenter` with a clock of the test's own passed in: a camera whose media time runs 10 % slow
against the wall clock drifts 1 s per 10 s segment.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from recorder.segmenter import MAX_DRIFT_SECONDS, Segmenter
from tests.support.clock import SetClock
from tests.support.media import make_fmp4, requires_ffmpeg
from vault.media.mp4 import Fragment, FragmentedMp4Reader, InitSegment
from vault.sealed.seal import read_header
from vault.store.spool import ensure_spool
from vault.timeutil import parse_iso

pytestmark = requires_ffmpeg

T0 = datetime(2026, 11, 21, 8, 0, tzinfo=UTC)


def record(tmp_path: Path, wall_per_media_second: float) -> list[dict]:
    """Feed 40 s of fragments, each arriving when the (skewed) wall clock says; return segment metas."""
    mp4 = make_fmp4(tmp_path / "cam.mp4", seconds=40, width=320, height=240, gop=25, frag_duration_us=500_000)
    items = FragmentedMp4Reader().feed(mp4.read_bytes())
    spool = tmp_path / "spool"
    ensure_spool(spool)
    key = X25519PrivateKey.generate().public_key()
    clock = SetClock(T0)
    seg = Segmenter("cam-1", "site", 10.0, spool, key, tmp_path / "cam-1.json", clock)
    seg.connection_started()
    for item in items:
        if isinstance(item, Fragment):
            media_end = (item.decode_time_seconds or 0.0) + item.duration_seconds
            clock.t = T0 + timedelta(seconds=media_end * wall_per_media_second)
        elif not isinstance(item, InitSegment):
            continue  # mfra at the end of a file: a pipe never carries it
        seg.on_item(item)
    seg.close("sigterm")
    metas = []
    for p in spool.glob("*.seg"):
        with open(p, "rb") as f:
            metas.append(read_header(f).meta)
    return sorted(metas, key=lambda m: m["start"])


def test_segments_abut_when_the_camera_keeps_time(tmp_path: Path) -> None:
    metas = record(tmp_path, 1.0)
    starts = [parse_iso(m["start"]) for m in metas]
    assert len(starts) == 4
    assert abs((starts[0] - T0).total_seconds()) < 0.01
    assert [(b - a).total_seconds() for a, b in zip(starts, starts[1:], strict=False)] == pytest.approx(
        [10.0, 10.0, 10.0], abs=0.01
    )


def test_a_drifting_camera_is_re_anchored_and_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "holdfast.recorder.camera")
    metas = record(tmp_path, 1.1)
    starts = [parse_iso(m["start"]) for m in metas]
    assert len(starts) == 4
    steps = [(b - a).total_seconds() for a, b in zip(starts, starts[1:], strict=False)]
    # 10 s of media each, the wall clock 1 s further ahead per segment: once that exceeds 2 s (the
    # fourth segment, 3 s) its start moves to the wall clock instead of abutting the third.
    assert steps[0] == pytest.approx(10.0, abs=0.01)
    assert max(steps) > 10.0 + MAX_DRIFT_SECONDS - 0.01
    for i, s in enumerate(starts):
        wall = T0 + timedelta(seconds=10 * i * 1.1)
        assert abs((s - wall).total_seconds()) <= MAX_DRIFT_SECONDS + 0.01, (i, s, wall)
    drift = [r for r in caplog.records if r.getMessage() == "camera.clock_drift"]
    assert drift and drift[0].kv["camera"] == "cam-1" and drift[0].kv["drift"] > MAX_DRIFT_SECONDS  # type: ignore[attr-defined]
