"""Both tamper-evident logs stay one verifiable chain under concurrent writers, on SQLite and PostgreSQL.

Writers are real: 16 client threads against a real `holdfast serve`, `holdfast hold add` and
`holdfast purge` as separate processes, erasures from threads of this process. Afterwards an
export verifies offline with the exact number of entries the work produced.
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

from tests.support.accounts import PASSWORD, add_user
from tests.support.appliance import Appliance
from tests.support.retention import hold_add_cli, make_segments, set_purge
from tests.support.server import serve, token
from vault.retention.purge import Purger
from vault.timeutil import iso

T0 = datetime(2026, 11, 21, 8, 0, tzinfo=UTC)
THREADS, VIEWS = 16, 50
HOLDS = 6


def export_and_verify(app: Appliance, out: Path) -> dict[str, int]:
    """`audit export` + `audit verify` (must pass); the number of entries in each exported log."""
    app.cli("audit", "export", str(out))
    p = app.cli("audit", "verify", str(out), "--pubkey", str(app.cfg.keys.dir / "sign.pub"), check=False)
    assert p.returncode == 0, p.stdout.decode() + p.stderr.decode()
    return {
        name: len((out / f"{name}-log" / "entries.jsonl").read_bytes().splitlines())
        for name in ("purge", "access")
    }


def log_sizes(app: Appliance) -> dict[str, int]:
    with app.vault() as v, v.sessions() as s:
        return {"purge": v.purge_log.size(s), "access": v.access_log.size(s)}


def test_concurrent_views_and_cli_holds_keep_one_verifiable_access_log(
    db_appliance: Appliance, tmp_path: Path
) -> None:
    app = db_appliance
    with app.vault() as v:
        seg = make_segments(v, "office-1", T0, 1)[0]
    add_user(app, "sec", "security", "demo")
    before = log_sizes(app)["access"]
    statuses: Counter[int] = Counter()
    lock = threading.Lock()
    hold_results: list[int] = []
    with serve(app) as (base, _proc):
        tok = token(base, "sec", PASSWORD)
        go = threading.Barrier(THREADS + 1)

        def viewer() -> None:
            with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {tok}"}, timeout=120) as c:
                go.wait()
                for _ in range(VIEWS):
                    try:
                        code = c.get(
                            f"/api/v1/segments/{seg}/media",
                            params={"purpose": "concurrency test"},
                            headers={"Range": "bytes=0-0"},
                        ).status_code
                    except httpx.TransportError:
                        code = -1  # the server dropped the connection
                    with lock:
                        statuses[code] += 1

        def holder() -> None:
            go.wait()
            for k in range(HOLDS):
                end = T0 + timedelta(minutes=k + 1)
                p = hold_add_cli(app, "office-1", T0, end, f"concurrency test {k}", check=False)
                hold_results.append(p.returncode)

        threads = [threading.Thread(target=viewer) for _ in range(THREADS)] + [
            threading.Thread(target=holder)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert statuses == Counter({206: THREADS * VIEWS}), statuses
    assert hold_results == [0] * HOLDS
    counts = export_and_verify(app, tmp_path / "export")
    assert counts["access"] == before + THREADS * VIEWS + HOLDS


def test_concurrent_purgers_and_erasures_keep_one_verifiable_purge_log(
    db_appliance: Appliance, tmp_path: Path
) -> None:
    app = db_appliance
    set_purge(app, require_clock_sync=False, batch_size=4)
    expired_at = datetime.now(UTC) - timedelta(days=60)
    with app.vault() as v:
        expired = make_segments(v, "office-1", expired_at, 24)
        recent = make_segments(v, "office-1", datetime.now(UTC) - timedelta(hours=2), 8)
    before = log_sizes(app)
    shared = app.vault()  # one Vault shared by threads, as the API's workers share one
    errors: list[BaseException] = []

    purger = Purger(shared, sync_check=lambda: True)  # migrates: Alembic runs in one thread only

    def eraser(ids: list[str]) -> None:
        for sid in ids:
            try:
                purger.delete_segment(sid, actor="dpo", role="dpo", reason="erasure request 7")
            except BaseException as e:  # noqa: BLE001 - reported below
                errors.append(e)

    procs = [app.popen("purge") for _ in range(3)]
    threads = [threading.Thread(target=eraser, args=(recent[i::4],)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    codes = [p.wait(300) for p in procs]
    shared.close()
    # On PostgreSQL one purger runs at a time across boxes (an advisory lock): a purger that finds
    # it held exits 6 and leaves the work to the holder. On SQLite (one box) all three run.
    assert all(c in (0, 6) for c in codes) and 0 in codes, codes
    assert not errors, errors
    counts = export_and_verify(app, tmp_path / "export")
    assert counts["purge"] == before["purge"] + len(expired) + len(recent)
    with app.vault() as v, v.sessions() as s:
        logged = [json.loads(text)["segment"] for _seq, text in v.purge_log.entries(s)]
    assert sorted(logged) == sorted(expired + recent)


def _open_incident(base: str, tok: str) -> int:
    r = httpx.post(
        base + "/api/v1/incidents",
        json={
            "site": "demo",
            "cameras": ["office-1"],
            "start": iso(T0),
            "end": iso(T0 + timedelta(minutes=1)),
            "description": "door forced",
        },
        headers={"Authorization": f"Bearer {tok}"},
        timeout=60,
    )
    assert r.status_code == 201, r.text
    return int(r.json()["id"])


def test_45_concurrent_notes_from_three_users_are_all_kept(db_appliance: Appliance) -> None:
    app = db_appliance
    with app.vault() as v:
        make_segments(v, "office-1", T0, 1)
    users = ("sec", "sec2", "dpo")
    add_user(app, "sec", "security", "demo")
    add_user(app, "sec2", "security", "demo")
    add_user(app, "dpo", "dpo")
    with serve(app) as (base, _proc):
        toks = {u: token(base, u, PASSWORD) for u in users}
        inc = _open_incident(base, toks["sec"])
        go = threading.Barrier(45)
        results: list[int] = []

        def note(user: str, k: int) -> None:
            with httpx.Client(
                base_url=base, headers={"Authorization": f"Bearer {toks[user]}"}, timeout=120
            ) as c:
                go.wait()
                try:
                    code = c.post(f"/api/v1/incidents/{inc}/notes", json={"text": f"{user} {k}"}).status_code
                except httpx.TransportError:
                    code = -1
                results.append(code)

        threads = [threading.Thread(target=note, args=(u, k)) for u in users for k in range(15)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert results == [200] * 45
        got = httpx.get(
            f"{base}/api/v1/incidents/{inc}", headers={"Authorization": f"Bearer {toks['dpo']}"}, timeout=60
        ).json()
    assert sorted(n["text"] for n in got["notes"]) == sorted(f"{u} {k}" for u in users for k in range(15))
    assert all(n["text"].split()[0] == n["by"] for n in got["notes"])


def test_api_hold_changes_are_followed_by_a_signed_checkpoint(appliance: Appliance) -> None:
    app = appliance
    with app.vault() as v:
        make_segments(v, "office-1", T0, 1)
    add_user(app, "sec", "security", "demo")
    add_user(app, "dpo", "dpo")

    def signed_head() -> tuple[int, int]:
        with app.vault() as v, v.sessions() as s:
            cp = v.access_log.latest_checkpoint(s)
            return v.access_log.size(s), (cp.size if cp else -1)

    with serve(app) as (base, _proc):
        inc = _open_incident(base, token(base, "sec", PASSWORD))
        size, signed = signed_head()
        assert signed == size, "opening an incident placed a hold but signed no checkpoint after it"
        r = httpx.post(
            f"{base}/api/v1/incidents/{inc}/close",
            json={"reason": "handed to the police"},
            headers={"Authorization": f"Bearer {token(base, 'dpo', PASSWORD)}"},
            timeout=60,
        )
        assert r.status_code == 200, r.text
        size2, signed2 = signed_head()
    assert size2 > size
    assert signed2 == size2, "closing an incident released a hold but signed no checkpoint after it"
