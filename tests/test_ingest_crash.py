"""Ingest killed with SIGKILL at random moments loses nothing and indexes nothing twice."""

from __future__ import annotations

import hashlib
import random
import signal
import subprocess
import time

from sqlalchemy import func, select

from tests.support.appliance import Appliance
from vault.index.schema import Segment
from vault.store.spool import SpoolSegment

N = 200


def test_sigkill_during_ingest(any_appliance: Appliance) -> None:
    appliance = any_appliance
    rng = random.Random(20261121)
    payloads: dict[str, str] = {}
    with appliance.vault() as v:
        for i in range(N):
            data = rng.randbytes(rng.randint(1, 200_000))
            seg = SpoolSegment(
                v.cfg.paths.spool,
                v.seal_public,
                {
                    "source": rng.choice(["office-1", "garage-1"]),
                    "kind": "video",
                    "start": f"2026-11-21T{i // 60:02d}:{i % 60:02d}:00Z",
                },
                chunk_size=16384,
            )
            seg.write(data)
            seg.close({"end": f"2026-11-21T{i // 60:02d}:{i % 60:02d}:10Z"})
            payloads[seg.segment_id] = hashlib.sha256(data).hexdigest()
    kills = 0
    spool = appliance.dir / "spool"

    def waiting() -> int:
        return len(list(spool.glob("*.seg")))

    while kills < 25:
        before = waiting()
        p = appliance.popen("ingest", "--once", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if rng.random() < 0.2:
            time.sleep(rng.uniform(0.05, 0.8))  # during start-up (imports, migration check)
        else:
            # mid-batch: after a random number of segments left the spool, plus a random few ms,
            # so the kill lands anywhere in verify / store write / index insert / unlink
            target = before - rng.randint(1, 6)
            deadline = time.monotonic() + 20
            while waiting() > target and p.poll() is None and time.monotonic() < deadline:
                time.sleep(0.002)
            time.sleep(rng.uniform(0, 0.02))
        if p.poll() is not None:
            break  # finished before we could kill it: everything is in
        p.send_signal(signal.SIGKILL)
        p.wait()
        kills += 1
    assert kills >= 20, f"ingest finished after only {kills} kills; slow the kill schedule down"
    assert waiting() < N, "the kills never let ingest make progress"
    appliance.cli("ingest", "--once")
    assert list(spool.glob("*.seg")) == [], "segments left in the spool"
    assert list((spool / "rejected").iterdir()) == [], "a killed ingest must not make files look bad"
    with appliance.vault() as v, v.sessions() as s:
        assert s.scalar(select(func.count()).select_from(Segment)) == N
        rows = list(s.scalars(select(Segment)))
        assert {r.id for r in rows} == set(payloads)
        for row in rows:
            with v.store.open(row.storage_key, row.storage_version) as f:
                blob = f.read()
            assert hashlib.sha256(blob).hexdigest() == row.sha256
            with v.open_segment(row) as r:
                assert hashlib.sha256(r.read()).hexdigest() == payloads[row.id]
    # no temporary files left half-written in the store
    assert [p for p in (appliance.dir / "store").rglob(".*.tmp")] == []
