"""The camera recorder's per-camera memory budget, kept structurally (no timed or sized asserts).

bench/recorder.py measures memory per camera against bare ffmpeg (target: at most 1.5x). What
made it fit is what the daemon loads: `python -S` and an import closure without the heavy modules
below. These tests fail when a change pulls one back into the daemon, at import or while it
records (lazy imports count), or when the CLI stops exec'ing the lean daemon.
"""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from recorder.camera import CameraSettings
from recorder.daemon import daemon_env, daemon_path
from tests.conftest import RtspServerFactory
from tests.support.appliance import Appliance
from tests.support.media import make_h264_annexb, requires_ffmpeg
from vault.ops import events
from vault.ops.logsetup import KeyValueFormatter

#: Module -> what the daemon uses instead (docs/benchmarks.md has what each cost per camera).
HEAVY = {
    "site": "python -S with an explicit path (the venv's .pth hooks)",
    "logging": "vault.ops.events, which writes the same lines",
    "subprocess": "os.posix_spawnp",
    "dataclasses": "NamedTuple and __slots__ classes",
    "hashlib": "cryptography's hashes and HMAC",
    "hmac": "cryptography's HMAC",
    "uuid": "os.urandom",
    "inspect": "nothing: it comes with dataclasses",
    "cryptography.hazmat.primitives.serialization": "the raw public key from the CLI",
    "encodings.idna": "ASCII camera hosts passed to socket as bytes",
    "pydantic": "CameraSettings, validated by the CLI",
    "sqlalchemy": "nothing: recorders never touch the index",
    "config": "CameraSettings",
    "cli": "nothing",
    "api": "nothing",
}

#: Run the daemon's own entry point for a few seconds, then report what it had loaded.
PROBE = """
import json, os, signal, sys
import recorder.daemon as daemon
signal.signal(signal.SIGALRM, lambda *_: os.kill(os.getpid(), signal.SIGTERM))
signal.alarm(int(sys.argv[1]))
rc = daemon._daemon(["--log-level", "INFO"])
print(json.dumps({"rc": rc, "modules": sorted(sys.modules)}))
"""


def point_at(appliance: Appliance, url: str) -> None:
    text = appliance.config_path.read_text()
    text, n = re.subn(r'^url = "rtsp://127\.0\.0\.1:8554/office-1"$', f'url = "{url}"', text, flags=re.M)
    assert n == 1
    appliance.config_path.write_text(text)


@pytest.mark.slow
@requires_ffmpeg
def test_recording_daemon_stays_within_its_import_budget(
    appliance: Appliance, rtsp_server_factory: RtspServerFactory, tmp_path: Path
) -> None:
    stream = make_h264_annexb(tmp_path / "small.h264", seconds=4, width=640, height=360, gop=25)
    server = rtsp_server_factory(mounts=("/office-1",), file=str(stream))
    point_at(appliance, server.url("/office-1"))
    settings = CameraSettings.from_config(appliance.cfg, "office-1")
    env = daemon_env([settings])
    out = subprocess.run(
        [sys.executable, "-S", "-c", PROBE, "6"], env=env, capture_output=True, timeout=60, check=False
    )
    log = out.stderr.decode(errors="replace")
    assert out.returncode == 0, log
    report = json.loads(out.stdout.decode().strip().splitlines()[-1])
    assert report["rc"] == 0, log
    # It really recorded: a sealed segment closed by SIGTERM (X25519, HKDF, AES-GCM, spool).
    assert list(settings.spool.glob("*.seg")), log
    assert "event=camera.segment " in log  # and logged it in the key=value format
    loaded = set(report["modules"])
    heavy = {m: why for m, why in HEAVY.items() if m in loaded}
    assert heavy == {}, f"the camera daemon loaded modules outside its memory budget: {heavy}"


def test_cli_execs_the_lean_daemon(appliance: Appliance) -> None:
    """`holdfast record camera` becomes `python -S -m recorder.daemon` in the same process."""
    proc = appliance.popen(
        "record", "camera", "office-1", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        cmdline: list[str] = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            cmdline = Path(f"/proc/{proc.pid}/cmdline").read_bytes().decode().split("\0")
            if "recorder.daemon" in cmdline:
                break
            time.sleep(0.05)
        assert cmdline[1:4] == ["-S", "-m", "recorder.daemon"], cmdline
        environ = Path(f"/proc/{proc.pid}/environ").read_bytes().split(b"\0")
        paths = next(e for e in environ if e.startswith(b"PYTHONPATH=")).decode()[len("PYTHONPATH=") :]
        assert paths.split(os.pathsep) == daemon_path()
    finally:
        proc.terminate()
        proc.wait(10)


def test_direct_event_lines_match_the_logging_format(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The daemon's own writer and the logging formatter print the same line for one event."""
    record = logging.LogRecord("holdfast.x", logging.WARNING, __file__, 1, "camera.gap", None, None)
    kv = {"camera": "office-1", "reason": 'camera unreachable (connection "refused")', "seconds": 20.5}
    record.kv = kv  # type: ignore[attr-defined]
    via_logging = KeyValueFormatter().format(record)

    monkeypatch.setattr(events, "_direct_level", None)
    events.write_directly("info")
    events.event(events.EventLog("holdfast.x"), "camera.gap", events.WARNING, **kv)
    events.event(events.EventLog("holdfast.x"), "camera.debug_only", events.DEBUG, a=1)
    direct = capsys.readouterr().err.splitlines()

    assert len(direct) == 1  # below the level: not written
    strip_ts = re.compile(r"^ts=\S+ ")
    assert strip_ts.sub("", direct[0]) == strip_ts.sub("", via_logging)
    assert re.match(r"^ts=\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00 level=warning ", direct[0])
