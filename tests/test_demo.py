"""Acceptance: `make demo` (python -m cli.main demo --dir DIR) headless: the RTSP server
with two cameras, both camera recorders, the synthetic call line, ingest, the purger and the API
all run; segments from both cameras and the call are indexed and play through the API with the
printed credentials (ffprobe reads them); /healthz and /metrics answer; SIGINT leaves no process
behind (nothing whose cmdline, cwd or environment names the demo dir or its ports)."""

from __future__ import annotations

import contextlib
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
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.support.appliance import REPO, remove_scratch, tmpfs_scratch
from tests.support.media import FFPROBE, requires_ffmpeg
from tests.support.rtsp import port_open
from tests.support.wait import wait_for

SOURCES = ("office-1", "garage-1", "cs-1")
HOLDFAST_CLI = [sys.executable, "-m", "cli.main"]


def pids_mentioning(markers: list[str]) -> dict[int, str]:
    """Every live process whose command line, cwd or environment names one of `markers`, with
    what it matched and its command line."""
    found = {}
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
            env = Path(f"/proc/{pid}/environ").read_bytes()
            cwd = os.readlink(f"/proc/{pid}/cwd").encode()
        except OSError:
            continue
        for m in markers:
            if m.encode() in cmd or m.encode() in env or m.encode() in cwd:
                shown = cmd.replace(b"\0", b" ").decode(errors="replace")[:200]
                found[int(pid)] = f"(matches {m!r}): {shown}"
                break
    return found


def processes_mentioning(markers: list[str]) -> list[str]:
    return [f"{pid} {what}" for pid, what in pids_mentioning(markers).items()]


@pytest.fixture
def demo_dir(tmp_path: Path) -> Iterator[Path]:
    """The demo's directory. Its scratch is on tmpfs (/dev/shm/holdfast-<hash>, `holdfast init`),
    outside what pytest removes, and the call recorder makes it: it is removed here once no
    process of the demo is left; after a failed test, those still running are killed first
    (every one names this test's own directory)."""
    d = tmp_path / "demo"
    yield d
    for pid in pids_mentioning([str(d)]):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    assert wait_for(lambda: not pids_mentioning([str(d)]), 60), processes_mentioning([str(d)])
    remove_scratch(d / "holdfast.toml")


def http(base: str, path: str, token: str | None = None, data: bytes | None = None) -> tuple[int, bytes]:
    req = urllib.request.Request(base + path, data=data)
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(req, timeout=30) as r:
        return r.status, r.read()


def token(base: str, user: str, password: str) -> str:
    """A bearer token from the API's script login."""
    form = urllib.parse.urlencode({"username": user, "password": password}).encode()
    _, body = http(base, "/api/v1/auth/token", data=form)
    return str(json.loads(body)["access_token"])


def demo_cli(
    d: Path, env: dict[str, str], *args: str, check: bool = False
) -> subprocess.CompletedProcess[bytes]:
    """`holdfast ARGS` on the demo's config in `d`, as an operator runs it beside the demo."""
    cmd = [*HOLDFAST_CLI, "--config", str(d / "holdfast.toml"), *args]
    return subprocess.run(cmd, capture_output=True, env=env, timeout=60, check=check)


def probe(data: bytes) -> dict:  # type: ignore[type-arg]
    p = subprocess.run(
        [FFPROBE, "-v", "error", "-show_streams", "-of", "json", "-i", "pipe:0"],
        input=data,
        capture_output=True,
        timeout=60,
    )
    assert p.returncode == 0, p.stderr.decode(errors="replace")
    return json.loads(p.stdout)  # type: ignore[no-any-return]


@requires_ffmpeg
def test_demo_runs_everything_and_ctrl_c_leaves_nothing(demo_dir: Path) -> None:
    d = demo_dir
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    started = datetime.now(UTC)
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
    indexed: dict[str, list[str]] = {}
    ports: list[int] = []

    def out() -> str:
        return "\n".join(lines)

    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and not any("running; Ctrl-C" in ln for ln in lines):
            assert proc.poll() is None, out()
            time.sleep(0.5)
        assert any("running; Ctrl-C" in ln for ln in lines), out()
        assert not [ln for ln in lines if ln.startswith("skip ")], out()  # every piece runs
        # Operators rely on this: the page's URL and the generated credentials are printed.
        url = next(m.group(0) for ln in lines if (m := re.search(r"http://127\.0\.0\.1:\d+", ln)))
        rtsp = next(m for ln in lines if (m := re.search(r"rtsp://127\.0\.0\.1:(\d+)/", ln)))
        ports = [int(url.rsplit(":", 1)[1]), int(rtsp.group(1))]
        creds = dict(re.findall(r"user (\w+)\s+password (\S+)", out()))
        assert set(creds) == {"security", "auditor", "dpo"}, out()

        # Let it run headless for 60 s, watching the index fill (the call loop places a call
        # every ~20 s, cameras close a segment every 10 s).
        end = time.monotonic() + 60
        while time.monotonic() < end or not all(indexed.values()) and time.monotonic() < end + 15:
            time.sleep(5)
            assert proc.poll() is None, out()
            r = demo_cli(d, env, "segments", "list", "--json")
            if r.returncode == 0:
                segs = json.loads(r.stdout)
                indexed = {s: [x["id"] for x in segs if x["source"] == s] for s in SOURCES}
        assert all(indexed.values()), f"sources without segments: {indexed}\n{out()}"

        status, _ = http(url, "/healthz")
        assert status == 200
        status, metrics = http(url, "/metrics")
        assert status == 200 and b"holdfast_camera_last_segment_age_seconds" in metrics
        assert all(ln.startswith((b"#", b"holdfast_")) for ln in metrics.splitlines() if ln)
        tok = token(url, "security", creds["security"])
        # Camera footage plays through the API (the API serves cameras only, so far: a call
        # recording is 404 "no camera"); the call is checked with `holdfast segments cat`.
        for source in ("office-1", "garage-1"):
            status, media = http(url, f"/api/v1/segments/{indexed[source][0]}/media?purpose=demo", tok)
            streams = probe(media)["streams"]
            assert status == 200 and any(s["codec_type"] == "video" for s in streams), (source, streams)
        call = demo_cli(d, env, "segments", "cat", indexed["cs-1"][0], check=True).stdout
        assert any(s["codec_type"] == "audio" for s in probe(call)["streams"])

        # The story within two minutes: the first purge removed back-dated footage (the purge
        # log shows it) and an incident's hold keeps some past its deadline.
        aud = token(url, "auditor", creds["auditor"])
        _, body = http(url, "/api/v1/audit/purge-log?limit=50", aud)
        purge_log = json.loads(body)
        assert purge_log["total"] >= 1 and purge_log["entries"][0]["reason"] == "expired", purge_log
        r = demo_cli(d, env, "segments", "list", "--source", "office-1", "--json", check=True)
        now = datetime.now(UTC)
        overdue = [x for x in json.loads(r.stdout) if datetime.fromisoformat(x["deadline"]) < now]
        assert overdue, "no segment kept past its deadline"
        _, body = http(url, "/api/v1/audit/compliance", aud)
        holds = json.loads(body)["holds"]
        assert any((h.get("incident") or "") and h["segments_held"] >= len(overdue) for h in holds), holds
        first_purge = datetime.fromisoformat(purge_log["entries"][0]["purged_at"])
        assert (first_purge - started).total_seconds() < 120, "the first purge came after two minutes"
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGINT)  # Ctrl-C reaches the supervisor (the terminal's group)
        try:
            rc = proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            raise
        reader.join(timeout=5)
    assert rc == 0, out()
    assert "stopped" in lines, out()
    # The tmpfs scratch (plaintext in memory) goes with the demo.
    scratch = tmpfs_scratch(d / "holdfast.toml")
    assert scratch is not None and not scratch.exists(), (scratch, out())
    markers = [str(d), *(f":{p}" for p in ports), *(str(p) for p in ports)]
    # Children already signalled may still be exiting on a busy machine: wait for the state.
    wait_for(lambda: not processes_mentioning(markers), 20)
    left = processes_mentioning(markers)
    assert left == [], "processes left behind:\n" + "\n".join(left)
    wait_for(lambda: not [p for p in ports if port_open(p)], 20)
    assert not [p for p in ports if port_open(p)], f"a demo port still accepts connections: {ports}"
    # Shut down cleanly: the call recorder sealed what it had, no tracebacks in any child's log.
    for log in (d / "logs").glob("*.log"):
        assert "Traceback" not in log.read_text(errors="replace"), f"{log.name}:\n{log.read_text()[-3000:]}"
