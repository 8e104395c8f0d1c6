"""The wheel carries everything `holdfast` imports and reads, so the installed command works
anywhere: built from the tracked files, installed non-editable into a fresh venv outside the
checkout, run from `/` with a clean environment (no PYTHONPATH, no checkout on sys.path).

The checkout's own tests cannot see a missing package: they import from the working tree.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from cli.main import build_parser
from tests.support.appliance import REPO
from tests.support.rtsp import free_port
from tests.support.wait import wait_for

pytestmark = pytest.mark.slow


def command_paths(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    """Every subcommand path of the argparse tree, nested ones included (`keys`, `keys init`, ...)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                path = (*prefix, name)
                yield path
                yield from command_paths(sub, path)


def clean_env(home: Path) -> dict[str, str]:
    """What a login shell on the box has: no PYTHONPATH, no virtualenv, PATH without the checkout."""
    return {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(home), "LANG": "C.UTF-8"}


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """bin/holdfast of a fresh venv holding the wheel built from the tracked files (no editable link)."""
    base = tmp_path_factory.mktemp("packaging")
    src = base / "src"
    src.mkdir()
    files = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout.split(
        b"\0"
    )
    for rel in filter(None, files):
        s = REPO / os.fsdecode(rel)
        d = src / os.fsdecode(rel)
        if s.is_symlink():  # as git checks it out (appliance/systemd links to systemd/)
            d.parent.mkdir(parents=True, exist_ok=True)
            d.symlink_to(os.readlink(s))
        elif s.is_file():  # a tracked file deleted in the working tree is not shipped
            d.parent.mkdir(parents=True, exist_ok=True)
            d.write_bytes(s.read_bytes())
    wheels = base / "wheels"
    p = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(wheels), str(src)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert p.returncode == 0, p.stderr
    (wheel,) = wheels.glob("holdfast-*.whl")
    venv = base / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    p = subprocess.run(
        [str(venv / "bin/pip"), "install", "-q", str(wheel)], capture_output=True, text=True, timeout=900
    )
    assert p.returncode == 0, p.stderr
    # Nothing of the checkout may be importable there: only the wheel's copy.
    p = subprocess.run(
        [str(venv / "bin/python"), "-c", "import appliance, cli; print(appliance.__file__, cli.__file__)"],
        cwd="/",
        env=clean_env(base),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert p.returncode == 0, p.stderr
    assert str(REPO) not in p.stdout and "site-packages" in p.stdout, p.stdout
    return venv / "bin" / "holdfast"


def run_installed(
    holdfast: Path, *args: str, cwd: str = "/", timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(holdfast), *args],
        cwd=cwd,
        env=clean_env(holdfast.parents[2]),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_every_subcommand_help_runs_from_the_installed_wheel(installed: Path) -> None:
    paths = list(command_paths(build_parser()))
    # The tree is the checkout's: each nested level is there (e.g. `keys init`, `audit verify`).
    assert ("install",) in paths and ("doctor",) in paths and ("demo",) in paths
    assert any(len(p) > 1 for p in paths), paths
    failures = []
    for args in [(), *paths]:
        p = run_installed(installed, *args, "--help")
        if p.returncode != 0 or "usage: holdfast" not in p.stdout:
            failures.append(f"holdfast {' '.join(args)} --help: exit {p.returncode}\n{p.stderr[-2000:]}")
    assert not failures, "\n".join(failures)


def test_installed_wheel_reads_its_package_data(installed: Path, tmp_path: Path) -> None:
    """Units, tmpfiles, the example config and the migrations come from site-packages."""
    root = tmp_path / "root"
    p = run_installed(installed, "install", "--root", str(root), timeout=300)
    assert p.returncode == 0, p.stderr
    sd = root / "etc/systemd/system"
    for unit in ("holdfast-ingest.service", "holdfast-api.service", "holdfast-purge.timer"):
        text = (sd / unit).read_text()
        assert "[Install]" in text
    # ExecStart names the installed command, not a checkout path.
    assert f"ExecStart={installed} " in (sd / "holdfast-ingest.service").read_text()
    assert (root / "etc/tmpfiles.d/holdfast-pbx.conf").is_file()
    assert (sd / "multi-user.target.wants/holdfast-recorder@office-1.service").is_symlink()
    # The example config rendered with the box's paths, and the index migrated to head.
    assert 'dir = "/var/lib/holdfast/keys"' in (root / "etc/holdfast/holdfast.toml").read_text()
    assert (root / "var/lib/holdfast/db/holdfast.db").stat().st_size > 0

    site = tmp_path / "site"
    p = run_installed(installed, "init", str(site))
    assert p.returncode == 0, p.stderr
    p = run_installed(installed, "--config", str(site / "holdfast.toml"), "config", "check")
    assert p.returncode == 0, p.stdout + p.stderr


def test_installed_api_serves_the_page_from_site_packages(installed: Path, tmp_path: Path) -> None:
    site = tmp_path / "site"
    assert run_installed(installed, "init", str(site)).returncode == 0
    port = free_port()
    proc = subprocess.Popen(
        [str(installed), "--config", str(site / "holdfast.toml"), "serve", "--port", str(port)],
        cwd="/",
        env=clean_env(tmp_path),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )

    def get(path: str) -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
                return r.status, r.read()
        except OSError:
            return 0, b""

    try:
        assert wait_for(lambda: get("/healthz")[0] == 200 or proc.poll() is not None, 120)
        assert proc.poll() is None, proc.stderr.read().decode(errors="replace") if proc.stderr else ""
        status, body = get("/static/app.js")
        assert status == 200 and body == (REPO / "api/static/app.js").read_bytes()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
