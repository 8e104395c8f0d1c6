"""Accounts: lockout under concurrency, login timing and memory, account administration (CLI and API).

Every test drives the real thing: a real `holdfast serve` where concurrency, timing or memory is
the point, FastAPI's TestClient for the admin routes, the CLI as a separate process.
"""

from __future__ import annotations

import getpass
import json
import os
import stat
import statistics
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from api.app import create_app
from tests.support.accounts import PASSWORD, add_user
from tests.support.appliance import Appliance, make_appliance
from tests.support.server import rss_mib, serve
from vault.index.schema import User
from vault.people.users import LOCK_AFTER


def login(base: str, name: str, password: str) -> httpx.Response:
    return httpx.post(base + "/api/v1/auth/token", data={"username": name, "password": password}, timeout=300)


def users_json(app: Appliance) -> dict[str, dict]:
    return {u["name"]: u for u in json.loads(app.cli("users", "list").stdout)}


# -- lockout, timing, memory ---------------------------------------------------------------------


def test_50_parallel_wrong_passwords_lock_the_account(db_appliance: Appliance) -> None:
    app = db_appliance
    add_user(app, "sec", "security", "demo")
    with serve(app) as (base, _proc):
        go = threading.Barrier(50)
        codes: list[int] = []

        def guess(k: int) -> None:
            go.wait()
            codes.append(login(base, "sec", f"wrong guess {k:03d}").status_code)

        threads = [threading.Thread(target=guess, args=(k,)) for k in range(50)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert codes == [401] * 50
        right = login(base, "sec", PASSWORD)
        assert right.status_code == 401, "the right password was accepted after 50 wrong guesses"
    u = users_json(app)["sec"]
    assert u["locked"] is True and u["failed_logins"] >= LOCK_AFTER
    # Once unlocked by an administrator the right password works again.
    app.cli("users", "unlock", "sec")
    with serve(app) as (base, _proc):
        assert login(base, "sec", PASSWORD).status_code == 200


def test_login_takes_the_same_time_for_unknown_existing_disabled_and_locked(appliance: Appliance) -> None:
    """Medians of interleaved attempts; each path does one argon2 verification and no sleep.

    An answer faster for a disabled account, or slower for an existing one with earlier failures,
    than for an unknown name would tell which accounts exist."""
    app = appliance
    for name in ("known", "off", "stuck"):
        add_user(app, name, "auditor")
    with app.vault() as v, v.sessions.begin() as s:
        s.scalars(select(User).where(User.name == "off")).one().disabled = True
    times: dict[str, list[float]] = {"unknown": [], "known": [], "off": [], "stuck": []}
    with serve(app) as (base, _proc):
        for _ in range(LOCK_AFTER):
            assert login(base, "stuck", "not the password").status_code == 401
        assert login(base, "known", PASSWORD).status_code == 200  # warm both paths up
        for _ in range(3):  # earlier failures of an existing account
            login(base, "known", "not the password")
        for _ in range(7):
            for who in times:
                t0 = time.perf_counter()
                r = login(base, "nobody-here" if who == "unknown" else who, "not the password")
                times[who].append(time.perf_counter() - t0)
                assert r.status_code == 401
                assert r.json()["detail"] == login(base, "nobody-here", "x" * 12).json()["detail"]
    med = {k: statistics.median(v) for k, v in times.items()}
    for who in ("known", "off", "stuck"):
        assert 0.5 * med["unknown"] <= med[who] <= 2.0 * med["unknown"], med


def test_16_concurrent_unknown_user_logins_do_not_exhaust_memory(appliance: Appliance) -> None:
    """argon2id costs 64 MiB per verification; `[api] max_password_checks` bounds how many run at once."""
    app = appliance
    with serve(app) as (base, proc):
        assert login(base, "warm-up", "not the password").status_code == 401
        _rss0, hwm0 = rss_mib(proc.pid)
        go = threading.Barrier(16)
        codes: list[int] = []

        def guess(k: int) -> None:
            go.wait()
            codes.append(login(base, f"nobody-{k}", "not the password").status_code)

        threads = [threading.Thread(target=guess, args=(k,)) for k in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        _rss1, hwm1 = rss_mib(proc.pid)
    assert codes == [401] * 16
    print(f"server peak RSS {hwm0:.0f} MiB before, {hwm1:.0f} MiB after 16 concurrent unknown-user logins")
    assert hwm1 - hwm0 < 320, f"peak RSS grew by {hwm1 - hwm0:.0f} MiB under 16 concurrent logins"


# -- account administration -----------------------------------------------------------------------


@pytest.fixture
def site(appliance: Appliance) -> Appliance:
    with open(appliance.config_path, "a", encoding="utf-8") as f:
        f.write('\n[[sites]]\nid = "north"\nname = "North"\ntimezone = "Europe/Helsinki"\ncountry = "FI"\n')
    add_user(appliance, "adm", "admin")
    add_user(appliance, "sec", "security", "demo")
    return appliance


@pytest.fixture
def client(site: Appliance) -> Iterator[TestClient]:
    with TestClient(create_app(site.cfg)) as c:
        yield c


def bearer(client: TestClient, name: str, password: str = PASSWORD) -> dict[str, str]:
    r = client.post("/api/v1/auth/token", data={"username": name, "password": password})
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['access_token']}"}


def test_cli_account_changes_are_logged_and_reach_live_sessions(site: Appliance, client: TestClient) -> None:
    me = getpass.getuser()
    sec = bearer(client, "sec")
    assert client.get("/api/v1/auth/me", headers=sec).json()["sites"] == ["demo"]
    assert [c["id"] for c in client.get("/api/v1/cameras", headers=sec).json()] == ["office-1", "garage-1"]

    site.cli("users", "set-sites", "sec", "north")
    assert client.get("/api/v1/auth/me", headers=sec).json()["sites"] == ["north"]
    assert client.get("/api/v1/cameras", headers=sec).json() == []

    site.cli("users", "set-role", "sec", "auditor")
    assert client.get("/api/v1/auth/me", headers=sec).json() == {
        "name": "sec",
        "role": "auditor",
        "sites": [],
        "views": ["approvals", "audit"],
    }
    assert client.get("/api/v1/audit/access-log", headers=sec).status_code == 200
    site.cli("users", "set-role", "sec", "security", "--site", "demo")
    assert client.get("/api/v1/audit/access-log", headers=sec).status_code == 403

    site.cli("users", "disable", "sec")
    assert client.get("/api/v1/auth/me", headers=sec).status_code == 401
    assert (
        client.post("/api/v1/auth/token", data={"username": "sec", "password": PASSWORD}).status_code == 401
    )
    site.cli("users", "enable", "sec")
    assert client.get("/api/v1/auth/me", headers=sec).status_code == 401, "disabling ends every session"
    sec = bearer(client, "sec")

    for _ in range(LOCK_AFTER):
        client.post("/api/v1/auth/token", data={"username": "sec", "password": "not the password"})
    assert users_json(site)["sec"]["locked"] is True
    site.cli("users", "unlock", "sec")
    assert users_json(site)["sec"]["locked"] is False
    other = bearer(client, "sec")

    out = site.cli("users", "logout", "sec").stdout.decode()
    assert "2 session(s)" in out
    assert client.get("/api/v1/auth/me", headers=sec).status_code == 401
    assert client.get("/api/v1/auth/me", headers=other).status_code == 401

    sec = bearer(client, "sec")
    site.cli("users", "remove", "sec")
    assert client.get("/api/v1/auth/me", headers=sec).status_code == 401
    assert "sec" not in users_json(site)
    bad = site.cli("users", "disable", "sec", check=False)
    assert bad.returncode != 0 and "no user 'sec'" in bad.stderr.decode()

    entries = [e for e in site.access_entries() if e["action"].startswith("account.")]
    assert [(e["action"], e["details"]["account"]) for e in entries] == [
        ("account.add", "adm"),
        ("account.add", "sec"),
        ("account.set_sites", "sec"),
        ("account.set_role", "sec"),
        ("account.set_role", "sec"),
        ("account.disable", "sec"),
        ("account.enable", "sec"),
        ("account.unlock", "sec"),
        ("account.logout", "sec"),
        ("account.remove", "sec"),
    ]
    assert all(e["user"] == me and e["role"] == "local-operator" for e in entries)
    assert entries[2]["details"]["sites"] == ["north"] and entries[2]["details"]["previous_sites"] == ["demo"]
    assert (
        entries[3]["details"]["account_role"] == "auditor"
        and entries[3]["details"]["previous_role"] == "security"
    )


def test_admin_api_account_changes_are_logged_and_reach_live_sessions(
    site: Appliance, client: TestClient
) -> None:
    adm = bearer(client, "adm")
    r = client.post(
        "/api/v1/users",
        json={"name": "guard", "role": "security", "sites": ["demo"], "password": "guard password 1"},
        headers=adm,
    )
    assert r.status_code == 201, r.text
    guard = bearer(client, "guard", "guard password 1")
    assert client.get("/api/v1/auth/me", headers=guard).json()["sites"] == ["demo"]

    r = client.put("/api/v1/users/guard/sites", json={"sites": ["north"]}, headers=adm)
    assert r.status_code == 200 and r.json()["sites"] == ["north"]
    assert client.get("/api/v1/auth/me", headers=guard).json()["sites"] == ["north"]
    r = client.put("/api/v1/users/guard/role", json={"role": "dpo"}, headers=adm)
    assert r.status_code == 200 and r.json()["role"] == "dpo" and r.json()["sites"] == []
    assert client.get("/api/v1/subject-requests", headers=guard).status_code == 200
    assert client.put("/api/v1/users/guard/role", json={"role": "security"}, headers=adm).status_code == 400
    r = client.put("/api/v1/users/guard/role", json={"role": "security", "sites": ["demo"]}, headers=adm)
    assert r.status_code == 200
    assert client.get("/api/v1/subject-requests", headers=guard).status_code == 403

    assert client.post("/api/v1/users/guard/disable", headers=adm).json()["disabled"] is True
    assert client.get("/api/v1/auth/me", headers=guard).status_code == 401
    assert client.post("/api/v1/users/guard/enable", headers=adm).json()["disabled"] is False
    guard = bearer(client, "guard", "guard password 1")
    for _ in range(LOCK_AFTER):
        client.post("/api/v1/auth/token", data={"username": "guard", "password": "not the password"})
    assert {u["name"]: u for u in client.get("/api/v1/users", headers=adm).json()}["guard"]["locked"] is True
    assert client.post("/api/v1/users/guard/unlock", headers=adm).json()["locked"] is False
    second = bearer(client, "guard", "guard password 1")
    assert client.post("/api/v1/users/guard/logout", headers=adm).json() == {"sessions_ended": 2}
    assert client.get("/api/v1/auth/me", headers=guard).status_code == 401
    assert client.get("/api/v1/auth/me", headers=second).status_code == 401
    guard = bearer(client, "guard", "guard password 1")
    assert client.delete("/api/v1/users/guard", headers=adm).status_code == 204
    assert client.get("/api/v1/auth/me", headers=guard).status_code == 401
    assert client.delete("/api/v1/users/guard", headers=adm).status_code == 404
    # Not an admin: refused, nothing changed.
    sec = bearer(client, "sec")
    assert client.post("/api/v1/users/adm/disable", headers=sec).status_code == 403

    entries = [e for e in site.access_entries() if e["action"].startswith("account.") and e["user"] == "adm"]
    assert [e["action"] for e in entries] == [
        "account.add",
        "account.set_sites",
        "account.set_role",
        "account.set_role",
        "account.disable",
        "account.enable",
        "account.unlock",
        "account.logout",
        "account.remove",
    ]
    assert all(e["role"] == "admin" and e["details"]["account"] == "guard" for e in entries)
    assert entries[0]["details"] == {"account": "guard", "account_role": "security", "sites": ["demo"]}


def test_log_out_everywhere_ends_every_session_of_the_caller(site: Appliance, client: TestClient) -> None:
    a, b = bearer(client, "sec"), bearer(client, "sec")
    adm = bearer(client, "adm")
    r = client.post("/api/v1/auth/logout-all", headers=a)
    assert r.status_code == 200 and r.json() == {"sessions_ended": 2}
    assert client.get("/api/v1/auth/me", headers=a).status_code == 401
    assert client.get("/api/v1/auth/me", headers=b).status_code == 401
    assert client.get("/api/v1/auth/me", headers=adm).status_code == 200, "other users keep their sessions"
    e = site.access_entries()[-1]
    assert (e["action"], e["user"], e["details"]) == (
        "account.logout",
        "sec",
        {"account": "sec", "sessions_ended": 2},
    )


# -- files -------------------------------------------------------------------------------------------


def test_init_makes_the_database_private(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        app = make_appliance(tmp_path / "site")
    finally:
        os.umask(old)
    db = Path(app.cfg.database.url.removeprefix("sqlite:///"))
    assert stat.S_IMODE(db.parent.stat().st_mode) == 0o700
    add_user(app, "sec", "security", "demo")
    with app.vault() as v, v.sessions() as s:
        s.scalar(select(User.id))  # an open connection keeps -wal and -shm beside the database
        files = sorted(p.name for p in db.parent.iterdir())
        modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in db.parent.iterdir()}
    assert {db.name, db.name + "-wal", db.name + "-shm"} <= set(files)
    assert modes == dict.fromkeys(files, 0o600), modes
