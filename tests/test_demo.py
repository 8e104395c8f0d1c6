"""Acceptance: `make demo` (python -m cli.main demo --dir DIR) headless for up to 60 s: segments
from both cameras and the call indexed and playable through the API with the printed
credentials; SIGINT leaves no process behind. Pieces not installed yet are reported by the demo
and skipped here by name (the no-leftover check always runs)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from tests.support.appliance import REPO


def processes_mentioning(marker: str) -> list[str]:
    """Every live process whose command line or environment names `marker` (the demo dir)."""
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
            env = Path(f"/proc/{pid}/environ").read_bytes()
        except OSError:
            continue
        if marker.encode() in cmd or marker.encode() in env:
            shown = cmd.replace(b"\0", b" ").decode(errors="replace")[:200]
            found.append(f"{pid}: {shown}")
    return found


def api(base: str, path: str, token: str | None = None, data: bytes | None = None) -> bytes:
    req = urllib.request.Request(base + path, data=data)
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(req, timeout=30) as r:
        return r.read()


def test_demo_runs_and_ctrl_c_leaves_nothing(tmp_path: Path) -> None:
    d = tmp_path / "demo"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "cli.main", "demo", "--dir", str(d)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,
        cwd=REPO,
    )
    lines: list[str] = []
    reader = threading.Thread(
        target=lambda: [lines.append(ln.decode(errors="replace").rstrip()) for ln in proc.stdout],  # type: ignore[union-attr]
        daemon=True,
    )
    reader.start()
    skipped: list[str] = []
    indexed: dict[str, int] = {}
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and not any("running; Ctrl-C" in ln for ln in lines):
            assert proc.poll() is None, "\n".join(lines)
            time.sleep(0.5)
        assert any("running; Ctrl-C" in ln for ln in lines), "\n".join(lines)
        skipped = [ln for ln in lines if ln.startswith("skip ")]
        want = {"office-1", "garage-1", "cs-1"}
        have_api = not any(ln.startswith("skip API") for ln in skipped)
        # Let it record for up to 60 s (less once every source has a segment).
        nothing_records = any(ln.startswith("skip recorders") for ln in skipped)
        end = time.monotonic() + (5 if nothing_records else 60)
        while time.monotonic() < end:
            time.sleep(5)
            out = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "cli.main",
                    "--config",
                    str(d / "holdfast.toml"),
                    "segments",
                    "list",
                    "--json",
                ],
                capture_output=True,
                env=env,
                timeout=60,
            )
            if out.returncode == 0:
                segs = json.loads(out.stdout)
                indexed = {s: sum(1 for x in segs if x["source"] == s) for s in want}
                if all(indexed.values()):
                    break
        if have_api:
            url = next(m.group(0) for ln in lines if (m := re.search(r"http://127\.0\.0\.1:\d+", ln)))
            creds = dict(re.findall(r"user (\w+)\s+password (\S+)", "\n".join(lines)))
            tok = json.loads(
                api(
                    url,
                    "/api/v1/auth/token",
                    data=urllib.parse.urlencode(
                        {"username": "security", "password": creds["security"]}
                    ).encode(),
                )
            )["access_token"]
            assert api(url, "/healthz")
            for source, n in indexed.items():
                if not n:
                    continue
                segs = json.loads(
                    api(
                        url,
                        f"/api/v1/segments?source={source}&start=2000-01-01T00:00:00Z&end=2100-01-01T00:00:00Z",
                        tok,
                    )
                )
                body = api(url, f"/api/v1/segments/{segs[0]['id']}/media?purpose=demo+acceptance", tok)
                assert body[4:8] in (b"ftyp", b"OggS") or body[:4] == b"OggS", source
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGINT)  # Ctrl-C reaches the supervisor (the terminal's group)
        try:
            rc = proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            raise
        reader.join(timeout=5)
    assert rc == 0, "\n".join(lines)
    assert "stopped" in lines
    time.sleep(0.5)
    left = processes_mentioning(str(d))
    assert left == [], "processes left behind:\n" + "\n".join(left)
    missing = [s for s, n in indexed.items() if not n]
    if skipped or missing:
        pytest.skip(f"demo pieces not available here: {skipped}; sources without segments: {missing}")
