"""`holdfast serve` runs uvicorn on uvloop's event loop and httptools' HTTP parser, with one worker
and with several: C code where asyncio and h11 spent a search's CPU on scheduling and parsing."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.support.accounts import PASSWORD, add_user
from tests.support.appliance import make_appliance
from tests.support.server import serve, token
from tests.support.wait import wait_for


def children(pid: int) -> list[int]:
    return [int(c) for t in Path(f"/proc/{pid}/task").iterdir() for c in (t / "children").read_text().split()]


def runs_on_c_loop_and_parser(pid: int) -> bool:
    maps = Path(f"/proc/{pid}/maps").read_text()
    return "/uvloop/loop." in maps and "/httptools/parser/parser." in maps


@pytest.mark.parametrize("workers", [1, 2])
def test_serve_runs_on_uvloop_and_httptools(tmp_path: Path, workers: int) -> None:
    app = make_appliance(tmp_path / "site")
    text = app.config_path.read_text()
    app.config_path.write_text(text.replace("[api]\n", f"[api]\nworkers = {workers}\n", 1))
    with serve(app) as (_base, proc):
        if workers == 1:
            assert runs_on_c_loop_and_parser(proc.pid)
        else:  # the forked workers serve; each maps both once its uvicorn has started
            assert wait_for(
                lambda: (
                    len(pids := children(proc.pid)) == workers and all(map(runs_on_c_loop_and_parser, pids))
                ),
                60,
            ), [(p, runs_on_c_loop_and_parser(p)) for p in children(proc.pid)]


def thread_count(pid: int) -> int:
    return len(list(Path(f"/proc/{pid}/task").iterdir()))


@pytest.mark.parametrize("workers", [1, 2])
def test_each_worker_runs_requests_on_its_configured_threads(tmp_path: Path, workers: int) -> None:
    """`[api] threads = 2`: 40 clients searching at once never make a worker start more than two
    request threads (anyio's default would start up to 40: api/pools.py says why that is slow)."""
    app = make_appliance(tmp_path / "site")
    add_user(app, "sec", "security", "demo")
    text = app.config_path.read_text()
    app.config_path.write_text(text.replace("[api]\n", f"[api]\nworkers = {workers}\nthreads = 2\n", 1))
    with serve(app) as (base, proc):
        bearer = {"Authorization": f"Bearer {token(base, 'sec', PASSWORD)}"}
        search = base + "/api/v1/segments?source=office-1&start=2026-01-01T00:00:00Z&end=2026-01-02T00:00:00Z"
        pids = [proc.pid] if workers == 1 else children(proc.pid)
        assert len(pids) == workers
        start = threading.Barrier(40)

        def client(_: int) -> list[int]:
            with httpx.Client(headers=bearer, timeout=120) as c:
                start.wait()
                return [c.get(search).status_code for _ in range(10)]

        before = [thread_count(p) for p in pids]
        with ThreadPoolExecutor(40) as pool:
            statuses = [s for got in pool.map(client, range(40)) for s in got]
        assert statuses == [200] * 400
        after = [thread_count(p) for p in pids]
        assert all(a <= b + 2 for a, b in zip(after, before, strict=True)), (before, after)
