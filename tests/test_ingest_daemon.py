"""`holdfast ingest` as a daemon: watchdog picks up renames, kill -9 and restart lose nothing."""

from __future__ import annotations

import signal
import subprocess
import time

from sqlalchemy import func, select

from tests.support.appliance import Appliance
from vault.index.schema import Segment
from vault.store.spool import SpoolSegment


def _spool_some(app: Appliance, n: int, offset: int) -> list[str]:
    ids = []
    with app.vault() as v:
        for i in range(offset, offset + n):
            seg = SpoolSegment(
                v.cfg.paths.spool,
                v.seal_public,
                {"source": "office-1", "kind": "video", "start": f"2026-11-21T10:{i:02d}:00Z"},
            )
            seg.write(bytes([i % 256]) * 50_000)
            seg.close({"end": f"2026-11-21T10:{i:02d}:10Z"})
            ids.append(seg.segment_id)
    return ids


def _indexed(app: Appliance) -> int:
    with app.vault() as v, v.sessions() as s:
        return s.scalar(select(func.count()).select_from(Segment)) or 0


def _wait_for(cond, timeout: float) -> bool:  # type: ignore[no-untyped-def]
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.1)
    return False


def test_daemon_watches_spool_survives_kill_and_catches_up(appliance: Appliance) -> None:
    before = _spool_some(appliance, 5, 0)  # arrived while ingest was down: found by the start-up scan
    p = appliance.popen("ingest", stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert _wait_for(lambda: _indexed(appliance) == 5, 30), "start-up scan did not ingest the backlog"
        during = _spool_some(appliance, 5, 5)  # arrive by atomic rename while it watches
        # well under the 30 s rescan interval: these come from watchdog events
        assert _wait_for(lambda: _indexed(appliance) == 10, 10), "watchdog events were not acted on"
        p.send_signal(signal.SIGKILL)
        p.wait(timeout=10)
        while_dead = _spool_some(appliance, 5, 10)
        assert _indexed(appliance) == 10
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    p = appliance.popen("ingest", stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert _wait_for(lambda: _indexed(appliance) == 15, 30)
        p.send_signal(signal.SIGTERM)
        assert p.wait(timeout=10) == 0, "SIGTERM must stop ingest cleanly"
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    with appliance.vault() as v, v.sessions() as s:
        assert set(s.scalars(select(Segment.id))) == set(before + during + while_dead)
    assert list((appliance.dir / "spool").glob("*.seg")) == []
