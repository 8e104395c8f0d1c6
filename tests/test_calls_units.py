"""The call recorder's systemd units pass `systemd-analyze verify` (ExecStart pointed at a real binary)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

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
