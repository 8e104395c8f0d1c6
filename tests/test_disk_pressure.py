"""Disk pressure on a real, size-limited filesystem: oldest unheld go first, held footage never."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from tests.support.appliance import Appliance
from tests.support.retention import Clock, make_segments, place_hold, release_hold, set_purge, set_store
from vault.index.schema import PurgeLogRow, Segment
from vault.retention.purge import Purger
from vault.store.ingest import Ingestor
from vault.store.spool import SpoolSegment
from vault.timeutil import iso
from vault.vault import Vault

MIB = 1024 * 1024
#: Near the real time: part of the test runs the CLI on the real clock, and the clock guard
#: would rightly refuse an injected clock behind that run.
T0 = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=10)


@pytest.fixture
def small_store(appliance: Appliance, tmp_path: Path) -> Iterator[tuple[Appliance, str]]:
    """A 20 MiB tmpfs for the store; without mount permission, the configured-quota fallback."""
    mnt = tmp_path / "storefs"
    mnt.mkdir()
    mounted = (
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=20m", "tmpfs", str(mnt)], capture_output=True
        ).returncode
        == 0
    )
    set_purge(appliance, require_clock_sync=False, high_water_percent=50)
    if mounted:
        set_store(appliance, str(mnt / "store"))
    else:
        set_purge(appliance, store_quota_bytes=20 * MIB)
    try:
        yield appliance, "tmpfs" if mounted else "quota"
    finally:
        if mounted:
            subprocess.run(["umount", "-l", str(mnt)], check=False)


def _stored(v: Vault) -> list[str]:
    with v.sessions() as s:
        return list(s.scalars(select(Segment.id).where(Segment.state == "stored").order_by(Segment.start)))


def test_oldest_unheld_purged_for_pressure_held_intact_then_store_stops(
    small_store: tuple[Appliance, str],
) -> None:
    app, mode = small_store
    clock = Clock(T0)
    v = Vault(app.cfg, clock=clock)
    ids = make_segments(v, "office-1", T0 - timedelta(hours=2), 14, seconds=60, payload=os.urandom(MIB))
    p = Purger(v)
    with v.sessions() as s:
        used, total = p.usage(s)
    assert used / total > 0.6, (mode, used, total)
    held = ids[:3]  # the three oldest: pressure must skip them and take the next oldest
    place_hold(v, "fight", actor="guard", now=T0, segment_ids=held)
    rep = p.run()
    left = _stored(v)
    assert set(held) <= set(left)
    gone = [i for i in ids if i not in left]
    assert gone and gone == ids[3 : 3 + len(gone)], "not the oldest unheld first"
    assert rep.purged == {"expired": 0, "disk-pressure": len(gone), "erasure-request": 0}
    with v.sessions() as s:
        used, total = p.usage(s)
        reasons = set(s.scalars(select(PurgeLogRow.reason)))
    assert used / total <= 0.5 and reasons == {"disk-pressure"}
    for sid in held:
        with v.sessions() as s, v.open_segment(v.get_segment(s, sid)) as r:
            assert r.plaintext_size == MIB

    # everything left is held and the mark drops below it: alert, no deletion, the store stops
    hid = place_hold(
        v,
        "whole morning",
        actor="guard",
        now=T0,
        sources=["office-1"],
        start=T0 - timedelta(days=1),
        end=T0 + timedelta(days=1),
    )
    set_purge(app, high_water_percent=5)
    v = Vault(app.cfg, clock=clock)
    before = _stored(v)
    out = app.cli("purge", "--json", check=False)
    assert out.returncode == 4 and b"ALERT" in out.stdout, out
    assert json.loads(out.stdout.split(b"\nALERT")[0])["store_full"] is True
    assert _stored(v) == before
    seg = SpoolSegment(v.cfg.paths.spool, v.seal_public, {"source": "office-1", "start": iso(T0)})
    seg.write(b"new footage")
    path, _ = seg.close({"end": iso(T0 + timedelta(seconds=10)), "duration": 10})
    st = Ingestor(v).scan()
    assert st.deferred == 1 and st.indexed == 0 and path.exists()  # waits in the spool, nothing lost
    # the hold is released: pressure resumes on what is no longer held, the store accepts again
    set_purge(app, high_water_percent=50)
    clock.now = datetime.now(UTC) + timedelta(seconds=1)
    v = Vault(app.cfg, clock=clock)
    release_hold(v, hid, "closed", now=clock.now)
    rep = Purger(v).run()
    assert not rep.store_full
    assert Ingestor(v).scan().indexed == 1 and not path.exists()


def test_store_filesystem_full_before_the_purger_saw_it_defers_ingest(
    small_store: tuple[Appliance, str],
) -> None:
    """ENOSPC mid-write (the disk filled between purger passes): the segment stays in the spool,
    the daemon does not die, no temporary file is left in the store, and it is ingested once
    space is back."""
    app, mode = small_store
    if mode != "tmpfs":
        pytest.skip("needs a real filesystem that fills up (mount permission for a tmpfs)")
    v = Vault(app.cfg)
    store = v.cfg.paths.store
    store.mkdir(parents=True, exist_ok=True)
    ballast = store.parent / "ballast"
    with open(ballast, "wb") as f:  # fill the filesystem to its last byte, outside the store
        try:
            while True:
                f.write(b"\0" * MIB)
                f.flush()
        except OSError:
            pass
    seg = SpoolSegment(v.cfg.paths.spool, v.seal_public, {"source": "office-1", "start": iso(T0)})
    seg.write(os.urandom(4 * MIB))
    path, _ = seg.close({"end": iso(T0 + timedelta(seconds=10)), "duration": 10})
    st = Ingestor(v).scan()
    assert (st.deferred, st.indexed, st.rejected) == (1, 0, 0) and path.exists()
    assert [p for p in store.rglob("*") if p.is_file()] == []  # no orphaned temporary file
    ballast.unlink()
    st = Ingestor(v).scan()
    assert st.indexed == 1 and not path.exists()
    assert _stored(v) == [path.name.removesuffix(".seg")]
