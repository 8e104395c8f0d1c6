"""`holdfast check`: every problem it reports is made for real here, then read back from the CLI.

Each test damages a real appliance the way a disk, an operator or a crash would (a deleted or
truncated blob, a flipped byte, a stray file, a half-finished purge, an edited log row, a stale
or plaintext spool file) and asserts the problem's kind and segment id or file name in both the
plain and the JSON output, and the exit status.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import insert, select, text, update

from tests.conftest import use_database
from tests.support.appliance import Appliance, make_appliance
from tests.support.media import make_fmp4
from tests.support.retention import make_segments, place_hold, set_purge
from vault.index.schema import HoldSegment, PurgeLogRow, PurgePending, Segment
from vault.retention.purge import Purger
from vault.store.local import LocalStore
from vault.vault import Vault

OLD = datetime.now(UTC) - timedelta(days=400)  # past every retention deadline
RECENT = datetime.now(UTC) - timedelta(hours=2)


def run_check(app: Appliance, *flags: str) -> tuple[int, list[dict[str, Any]], str]:
    """`holdfast check` twice, as a person would: JSON and plain. Both must agree."""
    pj = app.cli("check", "--json", *flags, check=False)
    pt = app.cli("check", *flags, check=False)
    assert pj.returncode == pt.returncode and pj.returncode in (0, 1), (pj.stderr, pt.stderr)
    doc = json.loads(pj.stdout)
    assert set(doc) == {"ok", "problems"} and doc["ok"] is (pj.returncode == 0)
    plain = pt.stdout.decode()
    for p in doc["problems"]:
        assert set(p) == {"kind", "segment", "path", "detail"}
        assert p["kind"] in plain
        assert (p["segment"] or p["path"]) in plain, (p, plain)
    return pj.returncode, doc["problems"], plain


def kinds(problems: list[dict[str, Any]]) -> set[tuple[str, str | None]]:
    return {(p["kind"], p["segment"]) for p in problems}


def problems_found(
    app: Appliance, expected: set[tuple[str, str | None]], *flags: str, by: str = "segment"
) -> tuple[list[dict[str, Any]], str]:
    """`holdfast check` (see run_check) exits 1 and names exactly the `expected` problems, as
    (kind, segment) pairs or, with `by="path"`, (kind, path); its problems and plain report."""
    rc, problems, plain = run_check(app, *flags)
    assert rc == 1
    assert {(p["kind"], p[by]) for p in problems} == expected, problems
    return problems, plain


def blob(v: Vault, sid: str) -> Path:
    with v.sessions() as s:
        return v.store.path(v.get_segment(s, sid).storage_key)


@pytest.fixture
def app(any_appliance: Appliance) -> Appliance:
    set_purge(any_appliance, require_clock_sync=False)
    return any_appliance


@pytest.fixture(params=["sqlite", "postgresql"])
def local_app(request: pytest.FixtureRequest, tmp_path: Path) -> Appliance:
    """The local store on both databases: these tests damage blobs through the store's files
    (the S3 store's damage and drift are in tests/test_store_s3.py)."""
    app = make_appliance(tmp_path / "site")
    if request.param == "postgresql":
        use_database(app, request.getfixturevalue("postgres_cluster").create_database())
    set_purge(app, require_clock_sync=False)
    return app


def test_clean_appliance_with_stored_and_purged_segments(app: Appliance) -> None:
    with app.vault() as v:
        make_segments(v, "office-1", OLD, 2)
        make_segments(v, "garage-1", RECENT, 2)
        make_segments(v, "office-1", RECENT, 2)
        Purger(v).run()
    rc, problems, plain = run_check(app)
    assert rc == 0 and problems == [] and plain.startswith("OK: no problems"), plain
    assert "4 indexed segments, 4 store files" in plain and "2 purge-log entries" in plain
    rc, problems, _ = run_check(app, "--deep")
    assert rc == 0 and problems == []


def test_store_damage_is_named_by_segment_and_key(local_app: Appliance) -> None:
    app = local_app
    with app.vault() as v:
        gone, short, left, flipped, fine = make_segments(v, "office-1", RECENT, 5)
        (other,) = make_segments(v, "garage-1", RECENT, 1)
        blob(v, gone).unlink()
        p = blob(v, short)
        p.write_bytes(p.read_bytes()[:-100])
        with v.sessions.begin() as s:  # a purge killed after step 1: state purging, key shredded
            s.execute(update(Segment).where(Segment.id == left).values(state="purging", envelope=None))
        stray = v.cfg.paths.store / "office-1" / "notes.txt"
        stray.write_bytes(b"someone's notes\n")
        p = blob(v, flipped)
        data = bytearray(p.read_bytes())
        data[len(data) // 2] ^= 0x01
        p.write_bytes(bytes(data))
        flipped_key = str(p.relative_to(v.cfg.paths.store))
    damage = {("blob_missing", gone), ("blob_size", short), ("purging", left), ("orphan", None)}
    problems, plain = problems_found(app, damage)
    (orphan,) = [p for p in problems if p["kind"] == "orphan"]
    assert orphan["path"] == "office-1/notes.txt"
    assert "holdfast purge" in next(p["detail"] for p in problems if p["kind"] == "purging")
    assert fine not in plain and other not in plain
    rc, problems, plain = run_check(app, "--deep")
    assert rc == 1 and ("blob_hash", flipped) in kinds(problems)
    (h,) = [p for p in problems if p["kind"] == "blob_hash"]
    assert h["path"] == flipped_key and "restore it from backup" in h["detail"]
    assert fine not in plain and other not in plain


def test_purge_leftovers_and_purge_log_against_the_index(local_app: Appliance, tmp_path: Path) -> None:
    app = local_app
    with app.vault() as v:
        a, b, c = make_segments(v, "office-1", OLD, 3)
        saved = shutil.copyfile(blob(v, a), tmp_path / "a.blob")
        key_a = str(blob(v, a).relative_to(v.cfg.paths.store))
        with v.sessions() as s:
            row_b = {col.key: getattr(s.get(Segment, b), col.key) for col in Segment.__table__.columns}
        Purger(v).run()
        # A blob the purge deleted comes back (a backup restored over the store).
        shutil.copyfile(saved, v.cfg.paths.store / key_a)
        # The index restored from before the purge: b's row is back, its log entry stays.
        with v.sessions.begin() as s:
            s.execute(insert(Segment), [row_b])
        # A purge whose last transaction was lost: marked, row gone, no log entry.
        with v.sessions.begin() as s:
            s.add(PurgePending(segment_id="lostlostlost", reason="expired", marked_at=v.clock()))
        seq_b = _seq(v, b)
    leftovers = {("purged_blob_present", a), ("purge_log_live", b), ("blob_missing", b)}
    problems, plain = problems_found(app, leftovers | {("purge_log_missing", "lostlostlost")})
    live = next(p for p in problems if p["kind"] == "purge_log_live")
    assert f"entry {seq_b}" in live["detail"] and f"holdfast purge --erase {b}" in live["detail"]
    assert c not in plain


def _seq(v: Vault, sid: str) -> int:
    with v.sessions() as s:
        return int(s.scalar(select(PurgeLogRow.seq).where(PurgeLogRow.segment_id == sid)))


def test_a_purged_segment_an_active_hold_names(app: Appliance) -> None:
    with app.vault() as v:
        (a,) = make_segments(v, "office-1", OLD, 1)
        Purger(v).run()
        hid = place_hold(
            v, "incident 7", known_sources={"office-1"}, sources=["office-1"], start=OLD, end=OLD
        )
        with v.sessions.begin() as s:
            s.execute(insert(HoldSegment), [{"hold_id": hid, "segment_id": a}])
    problems_found(app, {("held_purged", a)})


@pytest.mark.parametrize("log", ["purge", "access"])
def test_an_edited_log_row_fails_verification(app: Appliance, log: str) -> None:
    with app.vault() as v:
        make_segments(v, "office-1", OLD, 3)
        Purger(v).run()  # three purge-log entries and a signed checkpoint
        for who in ("anna", "bo"):
            v.access_log.record(user=who, role="viewer", action="segment.view", purpose="t", at=v.clock())
        with v.sessions.begin() as s:
            v.access_log.checkpoint(s, v.sign_key, v.clock())
        table = "purge_log" if log == "purge" else "access_log"
        with v.sessions.begin() as s:
            # An edit that keeps the JSON valid: who viewed, or why a segment was purged.
            before, after = (
                ('"reason":"expired"', '"reason":"erasure-request"')
                if log == "purge"
                else ('"user":"anna"', '"user":"carl"')
            )
            s.execute(
                text(f"UPDATE {table} SET entry = replace(entry, :a, :b) WHERE seq = 0"),
                {"a": before, "b": after},
            )
            assert before not in s.scalar(text(f"SELECT entry FROM {table} WHERE seq = 0"))
    rc, problems, plain = run_check(app)
    assert rc == 1 and [(p["kind"], p["path"]) for p in problems] == [("log_invalid", f"{log}-log")], problems
    assert "first bad entry: seq 0" in problems[0]["detail"]


def test_stale_and_plaintext_spool_files(local_app: Appliance, ffmpeg: str) -> None:
    app = local_app
    spool = app.cfg.paths.spool
    with app.vault() as v:
        make_segments(v, "office-1", RECENT, 1)
    mp4 = make_fmp4(spool / "leak.mp4", 1.0, width=320, height=240)
    stale = spool / "0123456789abcdef.gap.json"
    stale.write_text('{"waiting": true}')
    two_hours_ago = time.time() - 7200
    os.utime(stale, (two_hours_ago, two_hours_ago))
    fresh = spool / "fresh.gap.json"
    fresh.write_text("{}")
    problems, _ = problems_found(app, {("plaintext", str(mp4)), ("spool_stale", str(stale))}, by="path")
    assert "mp4" in next(p["detail"] for p in problems if p["kind"] == "plaintext")
    assert "holdfast-ingest" in next(p["detail"] for p in problems if p["kind"] == "spool_stale")
    # The same file dropped into the store: a stray file, and plaintext.
    dest = app.cfg.paths.store / "office-1" / "leak.mp4"
    shutil.move(mp4, dest)
    stale.unlink()
    problems_found(app, {("orphan", "office-1/leak.mp4"), ("plaintext", "office-1/leak.mp4")}, by="path")


def test_doctor_runs_the_quick_check(appliance: Appliance) -> None:
    with appliance.vault() as v:
        (sid,) = make_segments(v, "office-1", RECENT, 1)
    rows = {r["name"]: r for r in json.loads(appliance.cli("doctor", "--json", check=False).stdout)}
    assert rows["check"]["status"] == "OK", rows["check"]
    with appliance.vault() as v:
        blob(v, sid).unlink()
    rows = {r["name"]: r for r in json.loads(appliance.cli("doctor", "--json", check=False).stdout)}
    assert rows["check"]["status"] == "FAIL" and "blob_missing" in rows["check"]["detail"]
    assert "holdfast check" in rows["check"]["fix"]


def test_store_lists_blobs_in_bytewise_key_order(tmp_path: Path) -> None:
    """The merge with the index relies on it: `cam/...` sorts after `cam-2/...` and `cam_3`."""
    store = LocalStore(tmp_path)
    names = ["cam/2026/01/02/b", "cam-2/2026/01/01/a", "cam/2026/01/02/a", "cam_3/x", "cam/2026/01/0", "cam0"]
    for i, k in enumerate(names):
        (tmp_path / k).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / k).write_bytes(b"x" * i)
    listed = list(store.iter_blobs())
    assert [k for k, _ in listed] == sorted(names)
    assert dict(listed) == {k: i for i, k in enumerate(names)}
    assert store.blob_size("cam/2026/01/02/b") == 0 and store.blob_size("cam/nope") is None
