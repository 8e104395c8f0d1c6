"""The segmenter's rules on real MP4 fragments, with the wall clock passed in (no process, no pipe).

Each test feeds ffmpeg's fragmented MP4 (keyframe every second, fragments every 0.5 s as the
recorder asks) to `recorder.segmenter.Segmenter` the way recorder/camera.py does for one or more
connections, and reads what it left in the spool: sealed segments (their headers), gaps (their
JSON) and the `camera.segment` events with each segment's end reason.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from recorder.segmenter import Segmenter
from tests.support.clock import SetClock
from tests.support.media import make_fmp4, requires_ffmpeg
from vault.media.mp4 import Fragment, FragmentedMp4Reader, InitSegment
from vault.sealed.seal import read_header
from vault.store.spool import GAP_SUFFIX, ensure_spool
from vault.timeutil import parse_iso

pytestmark = requires_ffmpeg

T0 = datetime(2026, 11, 21, 8, 0, tzinfo=UTC)


def items(path: Path, seconds: float, width: int = 320) -> list[InitSegment | Fragment]:
    mp4 = make_fmp4(path, seconds=seconds, width=width, height=240, gop=25, frag_duration_us=500_000)
    return [i for i in FragmentedMp4Reader().feed(mp4.read_bytes()) if isinstance(i, InitSegment | Fragment)]


def play(
    seg: Segmenter,
    clock: SetClock,
    stream: list[InitSegment | Fragment],
    at: datetime,
    *,
    connect: bool = True,
) -> None:
    """A stream, on a new connection or the current one: each fragment arrives when its media end,
    counted from ``at``, is reached."""
    if connect:
        seg.connection_started()
    t0 = next((f.decode_time_seconds or 0.0) for f in stream if isinstance(f, Fragment))
    for item in stream:
        if isinstance(item, Fragment):
            clock.t = at + timedelta(seconds=(item.decode_time_seconds or 0.0) - t0 + item.duration_seconds)
        seg.on_item(item)


@pytest.fixture
def spool(tmp_path: Path) -> Path:
    ensure_spool(tmp_path / "spool")
    return tmp_path / "spool"


def segmenter(spool: Path, clock: SetClock) -> Segmenter:
    key = X25519PrivateKey.generate().public_key()
    return Segmenter("cam-1", "site", 4.0, spool, key, spool.parent / "cam-1.json", clock)


def metas(spool: Path) -> list[dict]:
    out = []
    for p in spool.glob("*.seg"):
        with open(p, "rb") as f:
            out.append(read_header(f).meta)
    return sorted(out, key=lambda m: m["start"])


def gaps(spool: Path) -> list[dict]:
    return sorted((json.loads(p.read_text()) for p in spool.glob(f"*{GAP_SUFFIX}")), key=lambda g: g["start"])


def end_reasons(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.kv["end_reason"] for r in caplog.records if r.getMessage() == "camera.segment"]  # type: ignore[attr-defined]


def test_a_lost_connection_is_a_gap_naming_its_cause_and_the_failed_reconnects(
    tmp_path: Path, spool: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, "holdfast.recorder.camera")
    stream = items(tmp_path / "a.mp4", seconds=6)
    clock = SetClock(T0)
    seg = segmenter(spool, clock)
    play(seg, clock, stream, T0)
    seg.connection_ended("stream ended")
    seg.attempt_failed(clock.t, "camera unreachable (connection refused)")
    seg.attempt_failed(clock.t, "camera unreachable (timed out)")
    resumed = T0 + timedelta(seconds=30)
    play(seg, clock, stream, resumed)
    seg.shutdown()

    # Cut at the first keyframe past the 4 s target, then the end of the stream; again after.
    assert end_reasons(caplog) == ["segment length", "stream ended", "segment length", "sigterm"]
    starts = [parse_iso(m["start"]) for m in metas(spool)]
    assert len(starts) == 4 and abs((starts[2] - resumed).total_seconds()) < 0.01
    [gap] = gaps(spool)
    assert parse_iso(gap["start"]) == T0 + timedelta(seconds=6)  # where the first stream's media ended
    assert parse_iso(gap["end"]) == starts[2]
    assert gap["reason"] == "stream ended; 2 reconnect attempt(s) failed: camera unreachable (timed out)"
    assert json.loads((tmp_path / "cam-1.json").read_text())["covered_until"]  # survives a restart


def test_a_connection_starts_at_a_keyframe_and_a_new_resolution_starts_a_segment(
    tmp_path: Path, spool: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, "holdfast.recorder.camera")
    small = items(tmp_path / "small.mp4", seconds=3)
    large = items(tmp_path / "large.mp4", seconds=3, width=640)
    clock = SetClock(T0)
    seg = segmenter(spool, clock)
    # Joined mid-GOP: the init, then a fragment that lacks a keyframe is not recorded.
    frags = [f for f in small if isinstance(f, Fragment)]
    delta = next(f for f in frags if not f.is_keyframe)
    seg.connection_started()
    assert seg.on_item(small[0]) is False
    assert seg.on_item(delta) is False
    assert metas(spool) == [] and seg.seg is None
    play(seg, clock, small, T0 + timedelta(seconds=10))
    play(seg, clock, large, T0 + timedelta(seconds=13), connect=False)  # ffmpeg sends a new init
    seg.on_item(small[0])  # and another one
    seg.connection_ended("stream ended")
    assert end_reasons(caplog) == ["parameters changed", "parameters changed"]
    assert [m["width"] for m in metas(spool)] == [320, 640]
    first = metas(spool)[0]
    assert parse_iso(first["start"]) == T0 + timedelta(seconds=10)  # began at its keyframe


def test_a_restart_never_overlaps_what_was_recorded_and_stopping_closes_the_gap(
    tmp_path: Path, spool: Path
) -> None:
    stream = items(tmp_path / "a.mp4", seconds=2)
    clock = SetClock(T0)
    seg = segmenter(spool, clock)
    last = T0 + timedelta(seconds=5)
    seg.resume_after(last, "recorder killed")
    play(seg, clock, stream, T0)  # the wall clock says the stream began before `last`
    seg.connection_ended("stall (no fragment for 5 s)")
    clock.t = T0 + timedelta(seconds=60)
    seg.attempt_failed(clock.t, "camera unreachable (connection refused)")
    seg.shutdown()
    [m] = metas(spool)
    assert parse_iso(m["start"]) == last  # moved up to what was covered, not overlapping it
    [gap] = gaps(spool)
    assert gap["reason"] == (
        "stall (no fragment for 5 s); 1 reconnect attempt(s) failed: camera unreachable (connection refused)"
        "; recorder stopped"
    )
    assert parse_iso(gap["start"]) == last + timedelta(seconds=2)
    assert parse_iso(gap["end"]) == clock.t
