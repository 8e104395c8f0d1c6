"""`holdfast install --root DIR` stages a complete box under DIR; uninstall keeps data unless asked.

Under --root no system user is created (that would change this machine's /etc/passwd): the
report says it is simulated and files belong to the invoking user. Everything else is real:
key files, modes, the migrated index, unit files, and `systemctl --root enable` symlinks."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import config as config_pkg
from tests.support.appliance import REPO

HOLDFAST = [sys.executable, "-m", "cli.main"]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    p = subprocess.run(
        [*HOLDFAST, *args],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        timeout=120,
    )
    assert p.returncode == 0, p.stderr
    return p


def mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


def test_install_into_root_then_rerun_then_uninstall(tmp_path: Path) -> None:
    root = tmp_path / "root"
    fake_bin = tmp_path / "venv" / "bin" / "holdfast"
    fake_bin.parent.mkdir(parents=True)
    fake_bin.write_text("#!/bin/sh\n")
    fake_bin.chmod(0o755)
    out = run("install", "--root", str(root), "--bin", str(fake_bin)).stdout
    assert "simulated" in out and "useradd --system holdfast" in out

    etc, state = root / "etc/holdfast", root / "var/lib/holdfast"
    assert mode(etc) == 0o750 and mode(etc / "holdfast.toml") == 0o640
    assert mode(state / "keys") == 0o700 and mode(state / "spool") == 0o750
    assert mode(state / "keys/seal.key") == 0o600 and mode(state / "keys/sign.key") == 0o600
    assert mode(state / "keys/seal.pub") == 0o644

    # The config names the box's paths (not the staging root) and is valid.
    cfg = config_pkg.load(etc / "holdfast.toml")
    assert cfg.paths.spool == Path("/var/lib/holdfast/spool")
    assert cfg.keys.dir == Path("/var/lib/holdfast/keys")
    assert cfg.database.url == "sqlite:////var/lib/holdfast/db/holdfast.db"
    assert (state / "db/holdfast.db").stat().st_size > 0

    sd = root / "etc/systemd/system"
    ingest = (sd / "holdfast-ingest.service").read_text()
    assert (
        f"ExecStart={fake_bin} " in ingest and "/opt/holdfast" not in ingest.split("ExecStart=")[1].split()[0]
    )
    assert (sd / "multi-user.target.wants/holdfast-ingest.service").is_symlink()
    assert (sd / "multi-user.target.wants/holdfast-api.service").is_symlink()
    if (REPO / "systemd/holdfast-recorder@.service").exists():
        for cam in cfg.cameras:
            assert (sd / f"multi-user.target.wants/holdfast-recorder@{cam.id}.service").is_symlink()

    # A rerun never overwrites keys or an edited config.
    seal = (state / "keys/seal.key").read_bytes()
    (etc / "holdfast.toml").write_text((etc / "holdfast.toml").read_text() + "\n# edited\n")
    out = run("install", "--root", str(root), "--bin", str(fake_bin)).stdout
    assert "kept the existing keys" in out and "config: kept" in out
    assert (state / "keys/seal.key").read_bytes() == seal
    assert "# edited" in (etc / "holdfast.toml").read_text()

    (state / "store/blob").write_bytes(b"sealed")
    out = run("uninstall", "--root", str(root)).stdout
    assert not (sd / "holdfast-ingest.service").exists()
    assert not (sd / "multi-user.target.wants/holdfast-ingest.service").exists()
    assert (state / "store/blob").exists() and (state / "keys/seal.key").exists()
    assert "kept" in out

    run("uninstall", "--root", str(root), "--purge-data")
    assert not state.exists() and not etc.exists()


def test_install_refuses_a_missing_executable(tmp_path: Path) -> None:
    p = subprocess.run(
        [*HOLDFAST, "install", "--root", str(tmp_path), "--bin", str(tmp_path / "nope")],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert p.returncode == 1 and "does not exist" in p.stderr and "make install" in p.stderr


def test_install_switches_the_recorder_layout_per_config(tmp_path: Path) -> None:
    """`[recorder] process_per = "site"`: one site unit instead of one unit per camera, and the
    per-camera instances are disabled (a camera recorded by two processes would have two writers);
    switching back reverses it."""
    root = tmp_path / "root"
    fake_bin = tmp_path / "holdfast"
    fake_bin.write_text("#!/bin/sh\n")
    fake_bin.chmod(0o755)
    run("install", "--root", str(root), "--bin", str(fake_bin))
    wants = root / "etc/systemd/system/multi-user.target.wants"
    config = root / "etc/holdfast/holdfast.toml"
    cams = [c.id for c in config_pkg.load(config).cameras if c.enabled]
    assert cams and all((wants / f"holdfast-recorder@{c}.service").is_symlink() for c in cams)
    assert not list(wants.glob("holdfast-site-recorder@*"))

    text = config.read_text()
    assert 'process_per = "camera"' in text  # the shipped default
    config.write_text(text.replace('process_per = "camera"', 'process_per = "site"'))
    out = run("install", "--root", str(root), "--bin", str(fake_bin)).stdout
    assert (wants / "holdfast-site-recorder@demo.service").is_symlink()
    assert not list(wants.glob("holdfast-recorder@*")), sorted(p.name for p in wants.iterdir())
    assert "disabled (other recorder layout): holdfast-recorder@" in out

    config.write_text(config.read_text().replace('process_per = "site"', 'process_per = "camera"'))
    run("install", "--root", str(root), "--bin", str(fake_bin))
    assert all((wants / f"holdfast-recorder@{c}.service").is_symlink() for c in cams)
    assert not list(wants.glob("holdfast-site-recorder@*"))
