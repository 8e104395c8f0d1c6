"""`[api] workers = 2`: a real `holdfast serve` with two worker processes on one socket.

What requests share must hold whichever worker answers: a view ticket one worker issued plays on
the other, parallel wrong guesses lock the account after exactly LOCK_AFTER checks across both,
and `max_concurrent_exports` counts exports running in either worker. `X-Holdfast-Worker` (the
answering worker's pid) shows that both answered.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from tests.support.apisite import PASSWORD, T0, ApiSite, build_site
from tests.support.footage import record
from tests.support.notify import NotifySocket
from tests.support.rtsp import free_port
from tests.support.server import serve, token
from tests.support.wait import wait_for
from vault.index.schema import User
from vault.people.users import LOCK_AFTER
from vault.timeutil import iso

START, END = "2026-11-21T08:00:00Z", "2026-11-21T08:03:00Z"
HELD_FROM = T0 + timedelta(hours=1)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> ApiSite:
    s = build_site(tmp_path_factory.mktemp("workers") / "site", count=6)
    # An export far larger than every buffer between a worker and a client that stops reading
    # (the 4 MiB socket send buffer cap, the transport's, one 1 MiB chunk): it cannot finish.
    record(s.app, "north-1", HELD_FROM, 8, 60.0)
    text = s.app.config_path.read_text()
    s.app.config_path.write_text(
        text.replace("[api]\n", "[api]\nworkers = 2\nmax_concurrent_exports = 1\n", 1)
    )
    return s


@pytest.fixture(scope="module")
def api(site: ApiSite) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    with serve(site.app) as served:
        yield served


def worker_pids(proc: subprocess.Popen[bytes]) -> set[int]:
    out = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True)
    return {int(x) for x in out.stdout.split()}


def until_both(
    call: Callable[[], httpx.Response], want: set[str], tries: int = 400
) -> dict[str, httpx.Response]:
    """Repeat `call` until each worker in `want` has answered once; the answers by worker."""
    seen: dict[str, httpx.Response] = {}
    for _ in range(tries):
        r = call()
        seen.setdefault(r.headers["x-holdfast-worker"], r)
        if want <= set(seen):
            return seen
    raise AssertionError(f"only workers {sorted(seen)} answered {tries} requests (want {sorted(want)})")


def test_two_workers_serve_one_socket_and_the_parent_supervises(
    api: tuple[str, subprocess.Popen[bytes]],
) -> None:
    base, proc = api
    pids = worker_pids(proc)
    assert len(pids) == 2, pids
    seen = until_both(lambda: httpx.get(base + "/healthz", timeout=60), {str(p) for p in pids})
    assert all(r.status_code == 200 for r in seen.values())
    # A worker killed outright is replaced; the service keeps answering.
    victim = min(pids)
    os.kill(victim, signal.SIGKILL)
    assert wait_for(lambda: victim not in worker_pids(proc) and len(worker_pids(proc)) == 2, 60)
    fresh = worker_pids(proc)
    until_both(lambda: httpx.get(base + "/healthz", timeout=60), {str(p) for p in fresh})


def test_a_ticket_from_one_worker_plays_on_the_other(
    api: tuple[str, subprocess.Popen[bytes]],
) -> None:
    base, proc = api
    tok = token(base, "sec", PASSWORD)
    h = {"Authorization": f"Bearer {tok}"}
    pids = {str(p) for p in worker_pids(proc)}
    q = f"start={START}&end={END}&purpose=incident review"
    r = httpx.get(base + f"/api/v1/cameras/office-1/playlist.m3u8?{q}", headers=h, timeout=60)
    assert r.status_code == 200, r.text
    issuer = r.headers["x-holdfast-worker"]
    uri = [x for x in r.text.splitlines() if x.startswith("/api/v1/play/")][0]
    # Fresh connections until the other worker has served a fetch of the same ticket.
    seen = until_both(lambda: httpx.get(base + uri, headers=h, timeout=60), pids)
    other = (pids - {issuer}).pop()
    assert seen[other].status_code == 200, seen[other].text
    assert seen[other].content == seen[issuer].content and len(seen[other].content) > 0


def test_login_lockout_holds_across_workers_under_parallel_guesses(
    site: ApiSite, api: tuple[str, subprocess.Popen[bytes]]
) -> None:
    base, proc = api
    add = ["users", "add", "victim", "--role", "security", "--site", "demo", "--password-stdin"]
    site.app.cli(*add, input=(PASSWORD + "\n").encode())

    def guess(i: int) -> httpx.Response:
        return httpx.post(
            base + "/api/v1/auth/token", data={"username": "victim", "password": f"wrong {i}"}, timeout=120
        )

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(guess, range(4 * LOCK_AFTER)))
    assert {r.status_code for r in answers} == {401}
    assert len({r.headers["x-holdfast-worker"] for r in answers}) == 2, "both workers took guesses"
    # The counter is one row: exactly LOCK_AFTER wrong passwords were counted, then it locked,
    # and the right password is refused on either worker while the lock lasts.
    v = site.app.vault()
    try:
        with v.sessions() as s:
            user = s.scalar(select(User).where(User.name == "victim"))
            assert user is not None and user.failed_logins == LOCK_AFTER and user.locked_until is not None
    finally:
        v.close()
    pids = {str(p) for p in worker_pids(proc)}
    seen = until_both(
        lambda: httpx.post(
            base + "/api/v1/auth/token", data={"username": "victim", "password": PASSWORD}, timeout=120
        ),
        pids,
        tries=60,
    )
    assert {r.status_code for r in seen.values()} == {401}


def _hold_export(base: str, tok: str, incident: int) -> tuple[socket.socket, str]:
    """Start an export and stop reading after its headers: the slot stays taken while the zip
    cannot drain (a tiny receive window). Returns the socket and the worker that took it."""
    host, port = base.removeprefix("http://").split(":")
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 2048)
    s.connect((host, int(port)))
    s.sendall(
        (
            f"POST /api/v1/incidents/{incident}/export HTTP/1.1\r\nHost: {host}:{port}\r\n"
            f"Authorization: Bearer {tok}\r\nContent-Length: 0\r\n\r\n"
        ).encode()
    )
    head = b""
    while b"\r\n\r\n" not in head:
        got = s.recv(1)
        assert got, head
        head += got
    text = head.decode("latin-1")
    assert text.startswith("HTTP/1.1 200"), text
    worker = [
        x.split(":", 1)[1].strip() for x in text.split("\r\n") if x.lower().startswith("x-holdfast-worker:")
    ]
    return s, worker[0]


def test_the_export_slot_limit_holds_across_workers(
    site: ApiSite, api: tuple[str, subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    base, proc = api
    tok = token(base, "north", PASSWORD)
    h = {"Authorization": f"Bearer {tok}"}
    span = {"start": iso(HELD_FROM), "end": iso(HELD_FROM + timedelta(minutes=8))}
    r = httpx.post(
        base + "/api/v1/incidents",
        headers=h,
        json={"site": "north", "cameras": ["north-1"], **span, "description": "slots"},
        timeout=60,
    )
    assert r.status_code == 201, r.text
    inc = r.json()["id"]
    held, holder = _hold_export(base, tok, inc)
    try:
        pids = {str(p) for p in worker_pids(proc)}
        seen = until_both(
            lambda: httpx.post(base + f"/api/v1/incidents/{inc}/export", headers=h, timeout=120),
            pids,
            tries=60,
        )
        other = (pids - {holder}).pop()
        assert seen[other].status_code == 429, seen[other].text[:300]
        assert "max_concurrent_exports" in seen[other].json()["detail"]
    finally:
        held.close()
    # The slot comes back once the held export's connection is gone.
    assert wait_for(
        lambda: (
            httpx.post(base + f"/api/v1/incidents/{inc}/export", headers=h, timeout=120).status_code == 200
        ),
        60,
    )


def test_the_parent_notifies_ready_when_all_workers_serve_and_feeds_the_watchdog_only_while_all_beat(
    site: ApiSite, tmp_path: Path
) -> None:
    ns = NotifySocket(tmp_path / "notify")
    port = free_port()
    log = open(tmp_path / "serve.log", "wb")  # noqa: SIM115 - closed below
    proc = site.app.popen(
        "serve", "--port", str(port), env=ns.env(watchdog_seconds=2.0), stdout=log, stderr=subprocess.STDOUT
    )
    base = f"http://127.0.0.1:{port}"
    try:
        assert wait_for(lambda: ns.values("READY") or proc.poll() is not None, 120), "no READY=1"
        assert proc.poll() is None, (tmp_path / "serve.log").read_text()
        pids = worker_pids(proc)
        assert len(pids) == 2
        # READY came from the parent only once both were serving: both answer at once.
        until_both(lambda: httpx.get(base + "/healthz", timeout=60), {str(p) for p in pids}, tries=100)
        assert any("2 workers" in x for x in ns.values("STATUS"))
        assert wait_for(lambda: len(ns.times("WATCHDOG=1")) >= 3, 60)
        # A hung worker (stopped) starves the watchdog, so systemd restarts the service.
        hung = min(pids)
        os.kill(hung, signal.SIGSTOP)
        try:
            assert wait_for(lambda: time.monotonic() - max(ns.times("WATCHDOG=1")) > 4.0, 60)
        finally:
            os.kill(hung, signal.SIGCONT)
        resumed = time.monotonic()
        assert wait_for(lambda: max(ns.times("WATCHDOG=1")) > resumed, 60)
        proc.terminate()
        assert proc.wait(30) == 0
        assert "STOPPING=1" in [m for _, m in ns.poll()]
        assert not (pids & worker_pids(proc))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        log.close()
        ns.close()


def test_workers_must_be_between_1_and_64() -> None:
    from pydantic import ValidationError

    from config.model import Api

    assert Api().workers == 1
    for bad in (0, 65, "two"):
        with pytest.raises(ValidationError, match="workers"):
            Api(workers=bad)
