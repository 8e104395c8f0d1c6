"""The call recorder's systemd units pass `systemd-analyze verify` (ExecStart pointed at a real binary)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support.appliance import make_appliance

UNITS = Path(__file__).resolve().parents[1] / "appliance" / "systemd"


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
def test_units_verify(tmp_path: Path) -> None:
    true = shutil.which("true")
    assert true is not None
    paths = []
    for src, name in (
        ("holdfast-calls@.service", "holdfast-calls@cs-1.service"),
        ("holdfast-pbx-ingest.service", "holdfast-pbx-ingest.service"),
    ):
        text = (UNITS / src).read_text().replace("/opt/holdfast/.venv/bin/holdfast", true)
        assert "ProtectSystem=strict" in text and "CapabilityBoundingSet=\n" in text
        (tmp_path / name).write_text(text)
        paths.append(str(tmp_path / name))
    p = subprocess.run(["systemd-analyze", "verify", *paths], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr


def test_a_line_without_its_sound_device_exits_78_and_its_unit_does_not_restart(tmp_path: Path) -> None:
    """EX_CONFIG with the reason and the fix, and 78 in RestartPreventExitStatus=: the unit stays
    failed with that message instead of restarting every RestartSec and burying it."""
    app = make_appliance(tmp_path / "site")
    text = app.config_path.read_text()
    assert 'device = "default"' in text
    app.config_path.write_text(text.replace('device = "default"', 'device = "holdfast-no-such-device"'))
    p = app.cli("record", "calls", "cs-1", check=False, timeout=120)
    err = p.stderr.decode(errors="replace")
    assert p.returncode == 78, err
    assert "line cs-1: no usable sound input device 'holdfast-no-such-device'" in err
    assert "systemctl restart holdfast-calls@cs-1" in err
    assert "Traceback" not in err
    unit = (UNITS / "holdfast-calls@.service").read_text()
    assert "\nRestartPreventExitStatus=2 78\n" in unit and "\nRestart=always\n" in unit
