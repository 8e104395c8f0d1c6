"""The whole appliance under chaos for a few minutes: bench/soak.py run as an operator would run it.

The soak itself checks the invariants at the end (check --deep, every closed segment indexed or
purged once, holds, gaps, logs verify) and exits 1 naming each problem; this test runs a short,
seeded soak as a subprocess and asserts its exit status and that the chaos really happened
(a run that killed nothing or purged nothing would prove nothing).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import require_gst_rtsp
from tests.support.units import processes_marked

REPO = Path(__file__).resolve().parents[1]
SOAK = REPO / "bench" / "soak.py"
MINUTES = 3.0


@pytest.mark.slow
def test_short_soak_survives_kills_outages_full_disks_and_holds(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("the soak mounts a tmpfs for the store: needs root")
    require_gst_rtsp()
    summary_path = tmp_path / "summary.json"
    proc = subprocess.Popen(
        [
            sys.executable,
            str(SOAK),
            "--minutes",
            str(MINUTES),
            "--seed",
            "20261126",
            "--dir",
            str(tmp_path / "soak"),
            "--json",
            str(summary_path),
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        stdout, stderr = proc.communicate(timeout=MINUTES * 60 + 900)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGTERM)  # the soak cleans up on SIGTERM: daemons, tmpfs
        stdout, stderr = proc.communicate(timeout=120)
        pytest.fail(f"the soak did not finish in time\n{stdout[-6000:]}\n{stderr[-3000:]}")
    out = stdout[-6000:] + stderr[-3000:]
    assert proc.returncode == 0, out
    s = json.loads(summary_path.read_text())
    assert s["ok"] and s["problems"] == [], out
    # The chaos happened: daemons were killed and came back, cameras dropped, the disk filled.
    assert sum(s["kills"].values()) >= 5, out
    assert sum(s["restarts"].values()) >= sum(v for k, v in s["kills"].items() if k != "purge"), out
    assert s["outages"] >= 1 and s["fills"], out
    assert s["holds_placed"] >= 1, out
    # Work flowed through every path: cameras, calls, PBX, imports; purges all along; API answered.
    closed = s["closed_by"]
    assert closed.get("camera.segment", 0) >= 10 and closed.get("pbx.sealed", 0) >= 1, out
    assert closed.get("call.stopped", 0) >= 1 and closed.get("import", 0) >= 10, out
    assert s["purged"] >= 10 and s["purge_runs"].get("ok", 0) >= 5, out
    assert s["api_requests"] >= 50 and s["exports"] >= 1, out
    assert s["audit"]["verified"], out
    from cli.main import COMMANDS

    if "check" in COMMANDS:  # `holdfast check --deep` ran and found nothing
        assert s["check"] == {"available": True, "ok": True, "problems": 0}, out
    # The soak left nothing running and nothing mounted.
    assert not (tmp_path / "soak" / "storefs" / "store").exists(), "the store's tmpfs is still mounted"
    run_id = next(line.split("run ")[-1] for line in stdout.splitlines() if line.startswith("soak seed"))
    assert processes_marked(run_id.strip() + ":") == {}


def test_the_soak_starts_daemons_from_the_shipped_units() -> None:
    """The soak's command lines and restart policy come from the unit files, not a copy of them."""
    from appliance.units import UNIT_DIR
    from cli.main import COMMANDS, command_word
    from tests.support.units import unit_from_file

    seen = {}
    for f in sorted(UNIT_DIR.glob("*.service")):
        u = unit_from_file(
            f,
            name=f.stem,
            instance="office-1",
            holdfast=["HOLDFAST"],
            config=Path("/soak/holdfast.toml"),
            bin_path="/opt/holdfast/.venv/bin/holdfast",
            etc_config="/etc/holdfast/holdfast.toml",
        )
        assert u.cmd[0] == "HOLDFAST" and command_word(u.cmd[1:]) in COMMANDS, (f.name, u.cmd)
        assert "/etc/holdfast/holdfast.toml" not in " ".join(u.cmd) + " ".join(u.env.values())
        assert "/soak/holdfast.toml" in u.cmd + list(u.env.values()), (f.name, u)
        seen[f.stem] = u
    assert seen["holdfast-recorder@"].cmd[1:] == ["record", "camera", "office-1"]
    assert seen["holdfast-recorder@"].restart and seen["holdfast-recorder@"].restart_sec > 0
    assert seen["holdfast-recorder@"].prevent_restart == (2, 78)
    assert not seen["holdfast-purge"].restart  # a oneshot, fired by its timer
