"""Every unit in systemd/ passes `systemd-analyze verify`, scores OK on `security`, and its
hardening does not break the daemon it runs (MemoryDenyWriteExecute checked for real)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from appliance import units
from tests.support.appliance import REPO, Appliance

pytestmark = pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd not installed")

DOCS = REPO / "docs" / "systemd.md"


def _parse(path: Path) -> dict[str, dict[str, str]]:
    """Unit files repeat keys (SystemCallFilter=...): values of a repeated key are joined by spaces."""
    out: dict[str, dict[str, str]] = {}
    section: dict[str, str] = {}
    for line in path.read_text("utf-8").splitlines():
        line = line.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("["):
            section = out.setdefault(line.strip("[]"), {})
            continue
        k, _, v = line.partition("=")
        section[k] = f"{section[k]} {v}".strip() if k in section and v else v
    return out


def test_verify_accepts_every_unit() -> None:
    # In this container systemd is not PID 1; verify works offline but checks that ExecStart's
    # binary exists, so units are staged with ExecStart pointing at a stub (appliance.units.staged).
    rc, out = units.verify()
    assert rc == 0 and out.strip() == "", out
    assert {p.name for p in units.unit_files()} >= {"holdfast-ingest.service", "holdfast-api.service"}


def test_verify_catches_a_broken_unit(tmp_path: Path) -> None:
    """The harness itself is not a rubber stamp: a bad directive value fails verify."""
    bad = tmp_path / "holdfast-bad.service"
    bad.write_text("[Service]\nType=notify\nExecStart=holdfast-not-absolute\n")
    rc, out = units.verify(tmp_path)
    assert rc != 0 and "holdfast-bad.service" in out


@pytest.mark.parametrize("unit", units.services(), ids=lambda p: p.name)
def test_security_exposure_ok_and_documented(unit: Path) -> None:
    score, rating = units.exposure(unit)
    assert score <= 3.0, f"{unit.name}: exposure {score} {rating}; tighten it (docs/systemd.md)"
    doc = DOCS.read_text("utf-8")
    m = re.search(rf"^\| `{re.escape(unit.name)}` \| (\d+\.\d) \| (\w+) \|", doc, re.M)
    assert m, f"{unit.name} has no row in docs/systemd.md: run `python -m appliance.units`"
    assert float(m.group(1)) == score, f"docs/systemd.md says {m.group(1)} for {unit.name}, measured {score}"


@pytest.mark.parametrize("unit", units.services(), ids=lambda p: p.name)
def test_common_hardening(unit: Path) -> None:
    svc = _parse(unit)["Service"]
    assert svc.get("User") == "holdfast"
    for key, want in {
        "ProtectSystem": "strict",
        "NoNewPrivileges": "yes",
        "PrivateTmp": "yes",
        "ProtectHome": "yes",
        "CapabilityBoundingSet": "",
    }.items():
        assert svc.get(key) == want, f"{unit.name}: {key}={svc.get(key)!r}, want {want!r}"
    assert "@system-service" in (svc.get("SystemCallFilter") or ""), unit.name
    assert svc.get("ExecStart", "").startswith(units.DEFAULT_HOLDFAST_BIN), unit.name
    assert svc.get("SyslogIdentifier", "").startswith("holdfast"), unit.name


def _mdwe_run(code: str, appliance: Appliance) -> subprocess.CompletedProcess[str]:
    """Run Python code after prctl(PR_SET_MDWE): what MemoryDenyWriteExecute=yes enforces."""
    prelude = (
        "import ctypes;libc=ctypes.CDLL(None,use_errno=True);"
        "assert libc.prctl(65,1,0,0,0)==0,'PR_SET_MDWE unsupported';"
        "import mmap\ntry:\n mmap.mmap(-1,4096,prot=7);raise SystemExit('W+X allowed')\n"
        "except PermissionError: pass\n"
    )
    return subprocess.run(
        [sys.executable, "-c", prelude + code],
        env=appliance.env(),
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_ingest_and_api_work_under_memory_deny_write_execute(appliance: Appliance, ffmpeg: str) -> None:
    """Both units set MemoryDenyWriteExecute=yes: ctypes/cffi (argon2, cryptography) must not need
    W+X pages. The kernel's PR_SET_MDWE gives the same refusal without systemd."""
    clip = appliance.dir / "clip.mp4"
    subprocess.run(
        [ffmpeg, "-v", "error", "-f", "lavfi", "-i", "testsrc=size=160x120:rate=5", "-t", "2", str(clip)],
        check=True,
    )
    appliance.cli("seal", "--source", "office-1", "--start", "2026-01-01T00:00:00Z", str(clip))
    p = _mdwe_run(
        "import sys;sys.argv=['holdfast','ingest','--once'];from cli.main import main;sys.exit(main())",
        appliance,
    )
    if "PR_SET_MDWE unsupported" in p.stderr:
        pytest.skip("kernel without PR_SET_MDWE (Linux < 6.3)")
    assert p.returncode == 0, p.stderr
    assert "ingest.indexed" in p.stderr
    code = (
        "import argon2;argon2.PasswordHasher().hash('x')\n"
        "import importlib.util\n"
        "if importlib.util.find_spec('api.app'):\n"
        " import config;from api.app import create_app;create_app(config.load(None))\n"
        "from vault.vault import Vault;import config\n"
        "with Vault(config.load(None)) as v:\n"
        " from vault.index.schema import Segment\n"
        " with v.sessions() as s:\n"
        "  seg=s.query(Segment).one()\n"
        "  with v.open_segment(seg) as r: assert r.read(0,8)\n"
        "print('ok')"
    )
    p = _mdwe_run(code, appliance)
    assert p.returncode == 0 and "ok" in p.stdout, p.stderr


def test_units_and_install_agree_on_key_and_state_paths() -> None:
    """One layout everywhere: the units name the directories `holdfast install` creates and writes
    into the config (a unit pointing at /etc/holdfast/keys would bind-mount a file that is not there)."""
    from appliance import install

    keys_dir = str(install.STATE / "keys")
    rendered = install.Installer(root=Path("/nonexistent")).render_config()
    assert f'dir = "{keys_dir}"' in rendered
    made = {str(p) for p, _mode, _owned in install.DIRECTORIES}
    for unit in units.unit_files():
        text = unit.read_text("utf-8")
        assert "/etc/holdfast/keys" not in text, unit.name
        for path in re.findall(r"/var/lib/holdfast/[\w./-]+", text):
            top = "/".join(path.split("/")[:5])  # /var/lib/holdfast/<dir>
            assert top in made, f"{unit.name} names {path}, but install makes no {top}"
