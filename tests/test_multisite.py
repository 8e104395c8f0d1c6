"""Many sites, one index and one bucket: site boxes ingest into the central PostgreSQL and RGW bucket.

Each site box holds only the vault's public key (no private key on a site box); several ingest
processes run at once; one purger runs at a time across all boxes; security staff see only
their sites.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import signal
import subprocess
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from api.app import create_app
from tests.conftest import use_database
from tests.support.accounts import add_user, h, log_in
from tests.support.apisite import NORTH_SITE
from tests.support.appliance import Appliance, make_appliance
from tests.support.retention import set_purge
from tests.support.rgw import RgwCluster, use_s3_store
from tests.support.wait import wait_for
from vault.index.schema import Segment
from vault.retention.purge import PURGE_LOCK_KEY
from vault.store.spool import SpoolSegment
from vault.timeutil import iso

T0 = datetime(2026, 11, 21, 8, 0, tzinfo=UTC)
N = 40  # segments per site


def _box(directory: Path, db: str, rgw: RgwCluster, bucket: str | None) -> Appliance:
    app = make_appliance(directory)
    with open(app.config_path, "a", encoding="utf-8") as f:
        f.write(NORTH_SITE)
    use_database(app, db)
    return use_s3_store(app, rgw, bucket)


def _site_box(directory: Path, db: str, rgw: RgwCluster, bucket: str, central: Appliance) -> Appliance:
    """A site box: the central vault's public key only; every private key removed."""
    app = _box(directory, db, rgw, bucket)
    keys = app.cfg.keys.dir
    for p in keys.iterdir():
        p.unlink()
    shutil.copy(central.cfg.keys.dir / "seal.pub", keys / "seal.pub")
    return app


@dataclass
class Estate:
    """One PostgreSQL index and one bucket, set up by the central box (the only one with the keys)."""

    db: str
    central: Appliance
    bucket: str
    rgw: RgwCluster
    tmp: Path

    def site_box(self, name: str) -> Appliance:
        """A new site box in tmp/name on the estate's index and bucket."""
        return _site_box(self.tmp / name, self.db, self.rgw, self.bucket, self.central)


@pytest.fixture
def estate(tmp_path: Path, postgres_cluster, rgw_cluster: RgwCluster) -> Estate:  # type: ignore[no-untyped-def]
    db = postgres_cluster.create_database()
    central = _box(tmp_path / "central", db, rgw_cluster, None)
    bucket = central.cfg.store.bucket
    assert bucket is not None
    return Estate(db, central, bucket, rgw_cluster, tmp_path)


def _spool(app: Appliance, source: str, n: int) -> dict[str, str]:
    """n sealed segments in the box's spool (as its recorders write them); id -> payload sha256."""
    from vault.sealed.keys import load_seal_public

    pub = load_seal_public(app.cfg.keys.dir / "seal.pub")
    out = {}
    for i in range(n):
        start = T0 + timedelta(seconds=10 * i)
        seg = SpoolSegment(app.cfg.paths.spool, pub, {"source": source, "kind": "video", "start": iso(start)})
        data = hashlib.sha256(f"{source}-{i}".encode()).digest() * 2000
        seg.write(data)
        seg.close({"end": iso(start + timedelta(seconds=10)), "duration": 10.0})
        out[seg.segment_id] = hashlib.sha256(data).hexdigest()
    return out


def test_two_sites_one_postgresql_one_bucket(estate: Estate) -> None:
    central = estate.central
    demo_box, north_box = estate.site_box("demo-box"), estate.site_box("north-box")
    assert not list(demo_box.cfg.keys.dir.glob("*.key")) and not list(north_box.cfg.keys.dir.glob("*.key"))
    want = _spool(demo_box, "office-1", N) | _spool(north_box, "north-1", N)

    # two ingest processes per site box, all four at once, against one index and one bucket
    procs = [
        box.popen("ingest", "--once", stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for box in (demo_box, north_box, demo_box, north_box)
    ]
    for p in procs:
        out, err = p.communicate(timeout=600)
        assert p.returncode == 0, err.decode()
    for box in (demo_box, north_box):
        assert list(box.cfg.paths.spool.glob("*.seg")) == []
        assert not (box.cfg.paths.spool / "rejected").exists() or not list(
            (box.cfg.paths.spool / "rejected").iterdir()
        )

    with central.vault() as v:
        with v.sessions() as s:
            assert s.scalar(select(func.count()).select_from(Segment)) == 2 * N
            rows = list(s.scalars(select(Segment)))
        assert {r.id for r in rows} == set(want)
        # the keyless site ingest said what it could not check; the central vault reads it all
        for row in rows:
            assert row.meta["authenticated_at_ingest"] is False
            with v.open_segment(row) as r:
                assert hashlib.sha256(r.read()).hexdigest() == want[row.id]
        # exactly one object version per segment: racing ingests left no orphan versions
        versions = list(v.store.iter_versions())
        assert sorted((x["key"], x["version"]) for x in versions) == sorted(
            (r.storage_key, r.storage_version) for r in rows
        )

    # security staff see only their sites
    add_user(central, "sec", "security", "demo")
    add_user(central, "north", "security", "north")
    north_seg = next(r for r in rows if r.source == "north-1")
    with TestClient(create_app(central.cfg)) as c:
        tokens = log_in(c, ("sec", "north"))
        tok = {name: h(tokens, name) for name in tokens}
        q = {"source": "north-1", "start": iso(T0), "end": iso(T0 + timedelta(hours=1))}
        assert c.get("/api/v1/segments", params=q, headers=tok["sec"]).status_code == 403
        found = c.get("/api/v1/segments", params=q, headers=tok["north"])
        assert found.status_code == 200 and len(found.json()) == N
        media = f"/api/v1/segments/{north_seg.id}/media?purpose=incident"
        assert c.get(media, headers=tok["sec"]).status_code == 403
        got = c.get(media, headers=tok["north"])
        assert got.status_code == 200 and hashlib.sha256(got.content).hexdigest() == want[north_seg.id]

    # one purger at a time across all boxes: another box holding the lock is named, nothing done
    set_purge(central, require_clock_sync=False)
    with psycopg.connect(estate.db, autocommit=True) as other:
        assert other.execute("SELECT pg_try_advisory_lock(%s)", (PURGE_LOCK_KEY,)).fetchone() == (True,)
        busy = central.cli("purge", check=False)
        assert busy.returncode == 6, busy.stderr
        assert b"another purger holds the purge lock" in busy.stderr and b"backend pid" in busy.stderr
        other.execute("SELECT pg_advisory_unlock(%s)", (PURGE_LOCK_KEY,))
    assert b"purged" in central.cli("purge").stdout


def test_site_box_without_private_key_cannot_read_what_it_stored(estate: Estate) -> None:
    central = estate.central
    box = estate.site_box("box")
    [sid] = list(_spool(box, "office-1", 1))
    assert b"indexed=1" in box.cli("ingest", "--once").stdout
    p = box.cli("segments", "cat", sid, check=False)
    assert p.returncode != 0 and b"seal" in p.stderr
    assert central.cli("segments", "cat", sid).stdout


def test_a_site_ingest_killed_mid_batch_loses_nothing_and_indexes_nothing_twice(estate: Estate) -> None:
    """kill -9 one site's ingest mid-batch (the other site's runs on), restart it: every segment is
    indexed once and reads back; an object left without a row is an orphan `holdfast check`
    names, never footage lost."""
    central = estate.central
    demo_box, north_box = estate.site_box("demo-box"), estate.site_box("north-box")
    many = 3 * N
    want = _spool(demo_box, "office-1", many) | _spool(north_box, "north-1", N)
    spool = demo_box.cfg.paths.spool

    def waiting() -> int:
        return len(list(spool.glob("*.seg")))

    north = north_box.popen("ingest", "--once", stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    kills = 0
    while kills < 6:
        before = waiting()
        p = demo_box.popen("ingest", "--once", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        # mid-batch: once a few segments have left the spool, so the kill lands between an
        # object's put, its row's commit and the spool file's unlink
        assert wait_for(lambda p=p, before=before: waiting() <= before - 3 or p.poll() is not None, 120)
        if p.poll() is not None:
            break  # finished before the kill: everything is in
        p.send_signal(signal.SIGKILL)
        p.wait()
        kills += 1
    assert kills >= 3, f"the ingest finished after {kills} kills; spool more segments"
    assert 0 < waiting() < many, "the kills left nothing to resume, or let nothing through"
    out, err = north.communicate(timeout=600)
    assert north.returncode == 0, err.decode()
    demo_box.cli("ingest", "--once")  # the restart
    assert list(spool.glob("*.seg")) == []
    rejected = spool / "rejected"
    assert not rejected.exists() or list(rejected.iterdir()) == []

    with central.vault() as v:
        with v.sessions() as s:
            rows = list(s.scalars(select(Segment)))
        ids = [r.id for r in rows]
        assert len(ids) == len(set(ids)) == len(want) and set(ids) == set(want)
        for row in rows:
            with v.open_segment(row) as r:
                assert hashlib.sha256(r.read()).hexdigest() == want[row.id]
        keys = {x["key"] for x in v.store.iter_versions() if not x["marker"]}
    indexed = {r.storage_key for r in rows}
    report = json.loads(central.cli("check", "--json", check=False).stdout)
    orphans = {p["path"] for p in report["problems"] if p["kind"] == "orphan"}
    assert keys - indexed == orphans, "an object without a row that check does not name"
    assert not orphans & indexed
