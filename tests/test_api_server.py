"""`holdfast serve` runs uvicorn on uvloop's event loop and httptools' HTTP parser, with one worker
and with several: C code where asyncio and h11 spent a search's CPU on scheduling and parsing."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.appliance import make_appliance
from tests.support.server import serve
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
