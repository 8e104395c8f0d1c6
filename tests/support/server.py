"""A real `holdfast serve` (uvicorn) on 127.0.0.1 for tests that need a separate server process."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from tests.support.appliance import Appliance
from tests.support.rtsp import free_port
from tests.support.wait import wait_for


def _status(pid: int) -> dict[str, str]:
    out = {}
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        for line in f:
            k, _, v = line.partition(":")
            out[k] = v.strip()
    return out


def rss_mib(pid: int) -> tuple[float, float]:
    """(current RSS, high-water RSS) of a process in MiB, from /proc/PID/status."""
    st = _status(pid)
    return int(st["VmRSS"].split()[0]) / 1024, int(st["VmHWM"].split()[0]) / 1024


@contextmanager
def serve(
    app: Appliance, env: dict[str, str] | None = None, *, tls_cert: Path | None = None, timeout: float = 60
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """`holdfast serve` on a free loopback port; yields (base URL, process); stopped on exit.
    With ``tls_cert`` (the appliance configured with it) the URL is https and /healthz is asked
    trusting that certificate; ``timeout`` is how long start-up may take on a busy machine."""
    port = free_port()
    log = open(app.dir / f"serve-{port}.log", "wb")  # noqa: SIM115 - closed below
    proc = app.popen("serve", "--port", str(port), env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"{'https' if tls_cert else 'http'}://127.0.0.1:{port}"
    verify: str | bool = str(tls_cert) if tls_cert else True

    def up() -> bool:
        assert proc.poll() is None, (app.dir / f"serve-{port}.log").read_text(errors="replace")
        try:
            return httpx.get(base + "/healthz", timeout=2, verify=verify).status_code == 200
        except httpx.TransportError:
            return False

    try:
        assert wait_for(up, timeout), f"holdfast serve did not answer /healthz within {timeout:.0f} s"
        yield base, proc
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, 9)
            proc.wait(5)
        log.close()


def token(base: str, name: str, password: str) -> str:
    r = httpx.post(base + "/api/v1/auth/token", data={"username": name, "password": password}, timeout=60)
    assert r.status_code == 200, r.text
    return str(r.json()["access_token"])
