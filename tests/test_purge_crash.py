"""The purger killed with SIGKILL at random moments, then rerun: nothing half-purged, log verifies."""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import time
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from tests.support.appliance import make_appliance
from tests.support.retention import make_segments, place_hold, set_purge
from vault.index.schema import PurgeLogRow, PurgePending, Segment

MIN_KILLS = 20
#: store -> (expired, kept, batch size): on RGW every segment costs a few HTTP requests to set
#: up, so fewer segments in smaller batches give the kills as many batch boundaries to land in.
SIZES = {"local": (4500, 500, 25), "s3": (1200, 200, 10)}


@pytest.fixture(params=["local", "s3"])
def shm_appliance(request: pytest.FixtureRequest):  # type: ignore[no-untyped-def]
    """The appliance on tmpfs: SIGKILL loses no page cache, so crash semantics are the same, and
    25,000 fsyncs of setup stop dominating a shared 2-core machine. With the S3 store on RGW too."""
    import shutil
    import tempfile
    from pathlib import Path

    from tests.support.rgw import use_s3_store

    d = Path(tempfile.mkdtemp(prefix="holdfast-crash-", dir="/dev/shm"))
    try:
        app = make_appliance(d / "site")
        if request.param == "s3":
            use_s3_store(app, request.getfixturevalue("rgw_cluster"))
        yield app, request.param
    finally:
        shutil.rmtree(d, ignore_errors=True)


@pytest.mark.slow
def test_kill9_during_segment_purge(shm_appliance, tmp_path) -> None:  # type: ignore[no-untyped-def]
    appliance, store_kind = shm_appliance
    N_EXPIRED, N_KEPT, batch = SIZES[store_kind]
    set_purge(appliance, require_clock_sync=False, batch_size=batch)
    now = datetime.now(UTC)
    with appliance.vault() as v:
        expired = make_segments(
            v, "office-1", now - timedelta(days=40), N_EXPIRED, seconds=1, payload=b"k" * 64
        )
        kept = make_segments(
            v, "garage-1", now - timedelta(hours=3), N_KEPT // 2, seconds=1, payload=b"k" * 64
        )
        held = make_segments(
            v, "office-1", now - timedelta(days=30), N_KEPT // 2, seconds=1, payload=b"k" * 64
        )
        place_hold(
            v,
            "crash test evidence",
            actor="t",
            sources=["office-1"],
            start=now - timedelta(days=30),
            end=now - timedelta(days=30) + timedelta(seconds=N_KEPT // 2),
        )
        keys = {}
        with v.sessions() as s:
            for seg in s.scalars(select(Segment)):
                keys[seg.id] = seg.storage_key
    db = appliance.cfg.database.url.removeprefix("sqlite:///")

    def progress() -> tuple[int, int]:
        with sqlite3.connect(db, timeout=30) as c:
            logged = c.execute("SELECT count(*) FROM purge_log").fetchone()[0]
            marked = c.execute("SELECT count(*) FROM purge_pending").fetchone()[0]
        return int(logged), int(marked)

    working_kills = mid_batch_kills = 0
    last_logged = 0
    rng = random.Random(int(os.environ.get("HOLDFAST_CRASH_SEED", "4")))
    kills = 0
    runs = 0
    while True:
        runs += 1
        p = appliance.popen("purge", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if kills < MIN_KILLS + 5:
            # wait until this run is visibly purging (start-up takes a variable second), then a
            # random moment later: inside a mark, an unlink loop, a log transaction or a checkpoint.
            # The moment is bounded by work as well as time (at most two batches logged), so a
            # fast purger or a starved test process cannot let one run finish the whole purge.
            before = progress()
            while p.poll() is None and progress() == before:
                time.sleep(0.01)
            until = time.monotonic() + rng.uniform(0.0, 0.3)
            while p.poll() is None and time.monotonic() < until and progress()[0] < before[0] + 2 * batch:
                time.sleep(0.01)
            if p.poll() is None:
                p.send_signal(signal.SIGKILL)
                p.wait()
                kills += 1
                logged, marked = progress()
                working_kills += logged > last_logged or marked > 0
                mid_batch_kills += marked > 0
                last_logged = logged
                continue
        assert p.wait(timeout=300) == 0
        break
    assert kills >= MIN_KILLS, f"only {kills} kills landed before the purge finished; lower the delays"
    # the kills hit a purge at work (not interpreter start-up), some between mark and log
    assert working_kills >= MIN_KILLS and mid_batch_kills >= 1, (working_kills, mid_batch_kills)

    with appliance.vault() as v, v.sessions() as s:
        rows = {seg.id: seg for seg in s.scalars(select(Segment))}
        entries = [json.loads(e) for e in s.scalars(select(PurgeLogRow.entry).order_by(PurgeLogRow.seq))]
        assert s.scalar(select(PurgePending.segment_id)) is None
    per_segment = Counter(e["segment"] for e in entries)
    assert max(per_segment.values()) == 1, "a segment was logged twice"
    for sid in expired:
        assert sid not in rows and not v.store.exists(keys[sid]) and per_segment[sid] == 1, sid
    for sid in kept + held:
        seg = rows[sid]
        assert seg.state == "stored" and seg.envelope is not None and v.store.exists(keys[sid]), sid
        assert per_segment[sid] == 0
    assert set(per_segment) == set(expired)
    assert [e["seq"] for e in entries] == list(range(N_EXPIRED))
    # nothing of a purged segment is left in the store: on S3, no version of its object at all
    assert {key for key, _size in v.store.iter_blobs()} == {keys[sid] for sid in kept + held}

    d = tmp_path / "export"
    appliance.cli("audit", "export", str(d))
    out = appliance.cli("audit", "verify", str(d), "--pubkey", str(appliance.cfg.keys.dir / "sign.pub"))
    assert b"purge-log: OK" in out.stdout
    print(f"runs={runs} kills={kills} working={working_kills} mid_batch={mid_batch_kills}")
