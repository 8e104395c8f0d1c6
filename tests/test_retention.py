"""Retention enforcement: deadlines, holds, clock guard, shredding, audit log, report."""

from __future__ import annotations

import io
import json
import re
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from tests.support.appliance import Appliance
from tests.support.retention import Clock, hold_add_cli, make_segments, place_hold, release_hold, set_purge
from vault.index.db import current_revision
from vault.index.schema import AccessLogRow, PurgeLogRow, Segment
from vault.retention import holds
from vault.retention.clocksync import clock_synchronised
from vault.retention.purge import ClockUntrusted, Purger
from vault.sealed.seal import KeyDestroyed, SegmentReader, read_header
from vault.store.ingest import Ingestor
from vault.store.spool import SpoolSegment
from vault.timeutil import iso, utcnow
from vault.vault import Vault

T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)


@pytest.fixture
def app(store_appliance: Appliance) -> Appliance:
    """Every retention, hold and tamper test runs with the local store and the S3 store (RGW)."""
    set_purge(store_appliance, require_clock_sync=False)
    return store_appliance


def _vault(app: Appliance, clock: Clock) -> Vault:
    return Vault(app.cfg, clock=clock)


def _ids(v: Vault) -> set[str]:
    with v.sessions() as s:
        return set(s.scalars(select(Segment.id)))


def _log(v: Vault) -> list[dict]:
    with v.sessions() as s:
        return [json.loads(r.entry) for r in s.scalars(select(PurgeLogRow).order_by(PurgeLogRow.seq))]


def _add_hold(v: Vault, reason: str, **scope: object) -> str:
    """A hold by an officer; any configured camera may be named (`known_sources`)."""
    return place_hold(v, reason, known_sources={c.id for c in v.cfg.cameras}, **scope)


def test_migrated_to_head_through_0002(app: Appliance) -> None:
    """The retention tables come with 0002_retention; later revisions (0003_api) build on it."""
    from alembic.script import ScriptDirectory

    from vault.index.db import alembic_config, head_revision

    with app.vault() as v:
        assert current_revision(v.engine) == head_revision(v.engine)
        chain = [r.revision for r in ScriptDirectory.from_config(alembic_config(v.engine)).walk_revisions()]
        assert "0002_retention" in chain


def test_one_second_before_deadline_stays_one_after_goes(app: Appliance) -> None:
    clock = Clock(T0)
    v = _vault(app, clock)
    [sid] = make_segments(v, "office-1", T0 - timedelta(minutes=5), 1)
    with v.sessions() as s:
        deadline = v.get_segment(s, sid).deadline
    assert deadline == T0 - timedelta(minutes=5) + timedelta(seconds=10) + timedelta(days=14)
    clock.now = deadline - timedelta(seconds=1)
    Purger(v).run()
    assert sid in _ids(v) and _log(v) == []
    clock.now = deadline + timedelta(seconds=1)
    rep = Purger(v).run()
    assert rep.purged["expired"] == 1
    assert sid not in _ids(v)
    assert not v.store.exists(f"office-1/{T0:%Y/%m/%d}/{sid}")
    [entry] = _log(v)
    assert entry["segment"] == sid and entry["reason"] == "expired" and entry["class"] == "office-camera"
    assert entry["deadline"] == iso(deadline) and entry["purged_at"] == iso(clock.now)
    for k in ("source", "start", "end", "sha256", "policy_version", "purger_version", "seq"):
        assert entry[k] is not None


def test_held_segment_survives_age_pressure_direct_and_admin_delete(app: Appliance) -> None:
    clock = Clock(T0)
    v = _vault(app, clock)
    held_id, free_id = make_segments(v, "garage-1", T0 - timedelta(hours=1), 2, seconds=600)
    _add_hold(v, segment_ids=[held_id], reason="vandalism of car 12", incident="INC-7")
    clock.advance(days=60)
    # age
    Purger(v).run()
    assert held_id in _ids(v) and free_id not in _ids(v)
    # direct delete through the library (erasure-request path) and the admin CLI
    with pytest.raises(holds.SegmentHeld):
        Purger(v).delete_segment(held_id, actor="admin", role="admin", reason="subject asked")
    p = app.cli("purge", "--erase", held_id, "--reason", "admin says so", "--user", "root", check=False)
    assert p.returncode == 5 and b"legal hold" in p.stderr
    # raw SQL, bypassing every Python check: the database trigger refuses
    with v.engine.begin() as c, pytest.raises(IntegrityError, match="legal hold"):
        c.exec_driver_sql("DELETE FROM segments WHERE id = ?", (held_id,))
    with v.engine.begin() as c, pytest.raises(IntegrityError, match="legal hold"):
        c.exec_driver_sql("UPDATE segments SET envelope = NULL WHERE id = ?", (held_id,))
    # disk pressure (a quota of 1 byte: always above the mark): nothing unheld left -> alert, no delete
    set_purge(app, store_quota_bytes=1)
    v2 = Vault(app.cfg, clock=clock)
    rep = Purger(v2).run()
    assert rep.store_full and held_id in _ids(v2)
    with v2.sessions() as s, v2.open_segment(v2.get_segment(s, held_id)) as r:
        assert r.read(0, 5) == b"holdf"
    # the refused attempts are in the access log
    with v.sessions() as s:
        actions = [(r.action, json.loads(r.entry)["result"]) for r in s.scalars(select(AccessLogRow))]
    assert ("segment.erase", "denied: under legal hold") in actions


def test_erasure_request_deletes_unheld_with_reason(app: Appliance) -> None:
    clock = Clock(T0)
    v = _vault(app, clock)
    [sid] = make_segments(v, "office-1", T0 - timedelta(hours=1), 1)
    Purger(v).delete_segment(sid, actor="dpo", role="dpo", reason="erasure request 2026-17")
    assert sid not in _ids(v)
    assert _log(v)[0]["reason"] == "erasure-request"


def test_range_hold_covers_segment_ingested_later_and_release_is_logged(app: Appliance) -> None:
    clock = Clock(T0)
    v = _vault(app, clock)
    reason = "assault at the counter"
    more = ("--incident", "POL-2026-991", "--user", "guard1")
    p = hold_add_cli(app, "office-1", T0 - timedelta(hours=2), T0, reason, *more)
    hold_id = p.stdout.decode().strip()
    # the recorder delivers footage of that range only now (spool backlog)
    [late] = make_segments(v, "office-1", T0 - timedelta(hours=1), 1)
    [outside] = make_segments(v, "office-1", T0 + timedelta(hours=1), 1)
    clock.advance(days=30)
    Purger(v).run()
    assert late in _ids(v) and outside not in _ids(v)
    listed = json.loads(app.cli("hold", "list", "--json").stdout)
    assert listed[0]["id"] == hold_id and listed[0]["active"] and listed[0]["incident"] == "POL-2026-991"
    p = app.cli("hold", "release", hold_id, "--reason", "", check=False)
    assert p.returncode == 2 and b"reason" in p.stderr
    app.cli("hold", "release", hold_id, "--reason", "case closed by police", "--user", "dpo1")
    Purger(v).run()
    assert late not in _ids(v)
    with v.sessions() as s:
        acts = [json.loads(r.entry) for r in s.scalars(select(AccessLogRow).order_by(AccessLogRow.seq))]
    assert [a["action"] for a in acts] == ["hold.add", "hold.release"]
    assert acts[0]["user"] == "guard1" and acts[0]["purpose"] == "assault at the counter"
    assert acts[1]["user"] == "dpo1" and acts[1]["purpose"] == "case closed by police" and acts[1]["time"]


def test_release_needs_permission_denial_logged(app: Appliance) -> None:
    clock = Clock(T0)
    v = _vault(app, clock)
    hid = _add_hold(v, sources=["office-1"], start=T0, end=T0 + timedelta(hours=1), reason="fight")
    with pytest.raises(holds.PermissionDenied):
        release_hold(v, hid, "oops", actor="guard2", role="staff", now=T0, allowed=lambda a, p: False)
    with v.sessions() as s:
        h = s.get(holds.Hold, hid)
        assert h is not None and h.released_at is None
        last = json.loads(s.scalars(select(AccessLogRow).order_by(AccessLogRow.seq.desc())).first().entry)
    assert last["action"] == "hold.release" and last["result"] == "denied" and last["user"] == "guard2"
    with pytest.raises(holds.HoldError, match="not in the future"):
        _add_hold(v, sources=["office-1"], start=T0, end=T0, reason="x", until=T0 - timedelta(days=1))
    with pytest.raises(holds.HoldError, match="reason"):
        _add_hold(v, sources=["office-1"], start=T0, end=T0, reason="  ")


def test_hold_with_until_expires_and_is_logged(app: Appliance) -> None:
    clock = Clock(T0)
    v = _vault(app, clock)
    [sid] = make_segments(v, "office-1", T0 - timedelta(hours=1), 1)
    _add_hold(v, segment_ids=[sid], reason="pending review", until=T0 + timedelta(days=20))
    clock.advance(days=19)
    Purger(v).run()
    assert sid in _ids(v)
    clock.advance(days=2)
    rep = Purger(v).run()
    assert rep.holds_expired == 1 and sid not in _ids(v)


def test_clock_back_an_hour_or_unsynchronised_refuses(app: Appliance) -> None:
    clock = Clock(T0)
    v = _vault(app, clock)
    [sid] = make_segments(v, "office-1", T0 - timedelta(days=30), 1)
    clock.advance(minutes=10)
    Purger(v).run()  # a run at T0+10min: sid expired long ago, goes
    [sid2] = make_segments(v, "office-1", T0 - timedelta(days=29), 1)  # ingested at T0+10min
    clock.now = T0 + timedelta(minutes=10) - timedelta(hours=1)
    with pytest.raises(ClockUntrusted, match="clock went backwards"):
        Purger(v).run()
    assert sid2 in _ids(v)
    clock.now = T0 + timedelta(hours=1)
    with pytest.raises(ClockUntrusted, match="not NTP-synchronised"):
        set_purge(app, require_clock_sync=True)
        Purger(Vault(app.cfg, clock=clock), sync_check=lambda: False).run()
    with pytest.raises(ClockUntrusted, match="cannot tell"):
        Purger(Vault(app.cfg, clock=clock), sync_check=lambda: None).run()
    assert sid2 in _ids(v)
    Purger(Vault(app.cfg, clock=clock), sync_check=lambda: True).run()
    assert sid2 not in _ids(v)


def test_segment_ingested_between_clock_read_and_guard_query_is_not_a_clock_jump(
    any_appliance: Appliance,
) -> None:
    """The demo's race, in its losing order: the purge reads the clock, then ingest commits a
    segment (ingested_at a few ms later), then the guard queries. Real clock, real ingest."""
    set_purge(any_appliance, require_clock_sync=False)
    ingest_side = Vault(any_appliance.cfg)
    ingested: list[str] = []

    def clock_then_ingest() -> datetime:
        t = utcnow()
        if not ingested:
            ingested.extend(make_segments(ingest_side, "office-1", t - timedelta(days=400), 1))
        return t

    v = Vault(any_appliance.cfg, clock=clock_then_ingest)
    rep = Purger(v).run()
    assert ingested and rep.purged["expired"] == 1
    with v.sessions() as s:
        assert s.get(Segment, ingested[0]) is None
    ingest_side.close()
    v.close()


def test_purges_racing_a_busy_ingest_never_refuse(app: Appliance) -> None:
    """Ingest commits segments as fast as it can while purges run back to back on the real clock."""
    stop = threading.Event()
    errors: list[BaseException] = []

    def ingest_loop() -> None:
        with Vault(app.cfg) as iv:
            try:
                while not stop.is_set():
                    make_segments(iv, "office-1", utcnow() - timedelta(days=400), 1)
            except BaseException as e:  # noqa: BLE001 - reported by the main thread
                errors.append(e)

    v = Vault(app.cfg)
    purger = Purger(v)  # migrates: before the thread starts, Alembic is not thread-safe
    t = threading.Thread(target=ingest_loop, daemon=True)
    t.start()
    try:
        for _ in range(25):
            purger.run()  # ClockUntrusted here is the bug
    finally:
        v.close()
        stop.set()
        t.join(timeout=120)
    assert not t.is_alive() and not errors, errors


def test_cli_purge_fails_closed_on_the_real_clock_check(app: Appliance) -> None:
    set_purge(app, require_clock_sync=True)
    synced = clock_synchronised()
    p = app.cli("purge", check=False)
    if synced is True:
        assert p.returncode == 0
    else:  # this container: adjtimex reports TIME_ERROR / STA_UNSYNC
        assert p.returncode == 3
        assert b"not NTP-synchronised" in p.stderr and b"require_clock_sync = false" in p.stderr


def test_blob_copied_before_purge_cannot_be_opened_after(app: Appliance, tmp_path: Path) -> None:
    clock = Clock(T0)
    v = _vault(app, clock)
    [sid] = make_segments(v, "office-1", T0 - timedelta(days=20), 1, payload=b"secret footage " * 500)
    with v.sessions() as s:
        seg = v.get_segment(s, sid)
        envelope = seg.envelope
        copy = tmp_path / "stolen.seg"
        with v.store.open(seg.storage_key, seg.storage_version) as blob:
            copy.write_bytes(blob.read())
    assert envelope is not None
    with open(copy, "rb") as f:  # before the purge the copy opens with the index's envelope
        assert SegmentReader(f, v.keyring, envelope=envelope).read(0, 6) == b"secret"
    Purger(v).run()
    assert sid not in _ids(v)
    with open(copy, "rb") as f, pytest.raises(KeyDestroyed):
        SegmentReader(f, v.keyring)
    # the only copy of the key is gone from the index files too (secure_delete + WAL checkpoint)
    db = Path(app.cfg.database.url.removeprefix("sqlite:///"))
    for p in [db, db.with_name(db.name + "-wal")]:
        if p.exists():
            assert envelope not in p.read_bytes(), p


def test_purged_segment_is_never_reingested(app: Appliance) -> None:
    clock = Clock(T0)
    v = _vault(app, clock)
    seg = SpoolSegment(
        v.cfg.paths.spool, v.seal_public, {"source": "office-1", "start": iso(T0 - timedelta(days=20))}
    )
    seg.write(b"x" * 100)
    path, _ = seg.close({"end": iso(T0 - timedelta(days=20) + timedelta(seconds=10)), "duration": 10})
    redelivery = path.read_bytes()
    Ingestor(v).scan()
    Purger(v).run()
    assert seg.segment_id not in _ids(v)
    path.write_bytes(redelivery)
    st = Ingestor(v).scan()
    assert st.rejected == 1 and seg.segment_id not in _ids(v)
    rejected = v.cfg.paths.spool / "rejected" / path.name
    reason = (v.cfg.paths.spool / "rejected" / f"{path.name}.reason.txt").read_text()
    assert "already purged: key envelope destroyed" in reason and "was purged" in reason
    # The rejected copy kept everything but its key envelope (zeroed in place before the move):
    # not even the vault's private key opens it, and the envelope's bytes are nowhere in it.
    original_envelope = read_header(io.BytesIO(redelivery)).envelope
    assert original_envelope is not None and original_envelope not in rejected.read_bytes()
    assert len(rejected.read_bytes()) == len(redelivery)
    with open(rejected, "rb") as f, pytest.raises(KeyDestroyed):
        SegmentReader(f, v.keyring)
    with open(rejected, "rb") as f:  # still a well-formed, diagnosable (keyless) sealed file
        assert read_header(f).segment_id == seg.segment_id


def test_report_overdue_zero_normally_and_counts_when_purger_stopped(app: Appliance) -> None:
    clock = Clock(T0)
    v = _vault(app, clock)
    make_segments(v, "office-1", T0 - timedelta(days=1), 3)
    [held] = make_segments(v, "garage-1", T0 - timedelta(days=1), 1)
    _add_hold(v, segment_ids=[held], reason="incident")
    from vault.ledger.report import compliance_report

    assert compliance_report(v, clock.now)["classes"]["office-camera"]["overdue"] == 0
    clock.advance(days=30)  # the purger "was stopped" while a month passed
    r = compliance_report(v, clock.now)
    assert r["classes"]["office-camera"] == r["classes"]["office-camera"] | {
        "segments": 3,
        "overdue": 3,
        "held": 0,
    }
    assert r["classes"]["parking-camera"]["held"] == 1 and r["classes"]["parking-camera"]["overdue"] == 0
    assert r["classes"]["office-camera"]["oldest_unheld_age_days"] > 14
    Purger(v).run()
    r = compliance_report(v, clock.now)
    assert r["classes"]["office-camera"]["overdue"] == 0 and r["purges"]["expired"] == 3
    assert r["holds"][0]["segments_held"] == 1 and r["holds"][0]["reason"] == "incident"
    rep = json.loads(app.cli("audit", "report", "--json").stdout)  # the CLI, on the real clock
    assert {c: rep["classes"][c]["overdue"] for c in rep["classes"]} == {
        "office-camera": 0,
        "parking-camera": 0,
        "call-audio": 0,
    }
    assert rep["purges"] == {"expired": 3, "disk-pressure": 0, "erasure-request": 0}


def _export(app: Appliance, v: Vault, clock: Clock, d: Path) -> None:
    make_segments(v, "office-1", T0 - timedelta(days=30), 12)
    Purger(v, batch_size=5).run()  # 3 batches -> 3 checkpoints
    app.cli("audit", "export", str(d))


def _verify(app: Appliance, d: Path) -> tuple[int, str]:
    p = app.cli("audit", "verify", str(d), "--pubkey", str(app.cfg.keys.dir / "sign.pub"), check=False)
    return p.returncode, p.stdout.decode() + p.stderr.decode()


def _lines(p: Path) -> list[bytes]:
    return p.read_bytes().splitlines(keepends=True)


@pytest.mark.parametrize("tamper", ["change", "remove", "reorder", "checkpoint", "truncate"])
def test_tampered_export_fails_and_names_the_entry(app: Appliance, tmp_path: Path, tamper: str) -> None:
    clock = Clock(T0)
    v = _vault(app, clock)
    d = tmp_path / "export"
    _export(app, v, clock, d)
    rc, out = _verify(app, d)
    assert rc == 0, out
    entries, cps = d / "purge-log" / "entries.jsonl", d / "purge-log" / "checkpoints.jsonl"
    lines = _lines(entries)
    assert len(lines) == 12
    if tamper == "change":
        lines[6] = lines[6].replace(b'"reason":"expired"', b'"reason":"erasure-request"')
        entries.write_bytes(b"".join(lines))
        expect = "seq 6"
    elif tamper == "remove":
        del lines[4]
        entries.write_bytes(b"".join(lines))
        expect = "seq 4"
    elif tamper == "reorder":
        lines[2], lines[3] = lines[3], lines[2]
        entries.write_bytes(b"".join(lines))
        expect = "seq 2"
    elif tamper == "truncate":
        entries.write_bytes(b"".join(lines[:-1]))
        expect = "seq 11"
    else:
        cl = _lines(cps)
        cp = json.loads(cl[1])
        cp["size"] = cp["size"] - 1
        cl[1] = json.dumps(cp).encode() + b"\n"
        cps.write_bytes(b"".join(cl))
        expect = "checkpoint 1"
    rc, out = _verify(app, d)
    assert rc == 1, out
    assert "purge-log: FAILED" in out and expect in out, out


def test_dry_run_lists_and_changes_nothing(app: Appliance) -> None:
    clock = Clock(T0)
    v = _vault(app, clock)
    [sid] = make_segments(v, "office-1", T0 - timedelta(days=30), 1)
    out = app.cli("purge", "--dry-run").stdout.decode()  # the real clock: long past the deadline
    assert f"{sid}  expired" in out and "would purge 1 segment(s)" in out
    assert sid in _ids(v) and _log(v) == []
    with v.sessions() as s:
        assert v.get_segment(s, sid).envelope is not None


def test_report_as_one_html_file(app: Appliance, tmp_path: Path) -> None:
    """`holdfast audit report --format html`: classes, the hold with its reason and owner, purges
    by reason with a per-day chart, times in the site's zone (UTC on hover), no script."""
    from html.parser import HTMLParser

    now = datetime.now(UTC)
    clock = Clock(now)
    v = _vault(app, clock)
    make_segments(v, "office-1", now - timedelta(days=20), 3)
    [held] = make_segments(v, "garage-1", now - timedelta(days=30), 1)
    _add_hold(v, segment_ids=[held], reason="incident 7: window broken")
    Purger(v).run()
    v.close()
    out = tmp_path / "report.html"
    app.cli("audit", "report", "--format", "html", "--output", str(out))
    page = out.read_text("utf-8")

    class Collect(HTMLParser):
        def __init__(self) -> None:
            super().__init__()
            self.tags: list[str] = []
            self.text: list[str] = []

        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            self.tags.append(tag)

        def handle_data(self, data: str) -> None:
            self.text.append(data)

    c = Collect()
    c.feed(page)
    text = " ".join(c.text)
    assert "script" not in c.tags and "link" not in c.tags  # one self-contained file
    assert "No footage has outlived its deadline without a legal hold." in text
    assert "incident 7: window broken" in text and "office-camera" in text and "14 days" in text
    assert c.tags.count("rect") >= 2  # the per-day chart has the purges
    assert "Europe/Helsinki" in text
    assert re.search(r'title="UTC \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d', page)
