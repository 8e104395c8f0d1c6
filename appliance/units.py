"""The systemd units in systemd/: where they are, how to verify and score them offline.

appliance/systemd is a link to the top-level systemd/, so a wheel carries the units as package
data and UNIT_DIR is the same path in a checkout and in site-packages.

Used by `holdfast install` (which copies them), by the tests (verify + security), and by
docs/systemd.md (the exposure table is produced by `python -m appliance.units`).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from config.model import HoldfastConfig

#: Package data of `appliance`: the same path in a checkout and in an installed wheel.
UNIT_DIR = Path(__file__).resolve().with_name("systemd")
#: The path every unit's ExecStart uses; `holdfast install --prefix` rewrites it.
DEFAULT_HOLDFAST_BIN = "/opt/holdfast/.venv/bin/holdfast"
UNIT_SUFFIXES = (".service", ".timer", ".target", ".socket", ".path")

_EXPOSURE_RE = re.compile(r"Overall exposure level for \S+: (\d+\.\d+) (\w+)")


def unit_files(unit_dir: Path = UNIT_DIR) -> list[Path]:
    return sorted(p for p in unit_dir.iterdir() if p.suffix in UNIT_SUFFIXES)


def services(unit_dir: Path = UNIT_DIR) -> list[Path]:
    return [p for p in unit_files(unit_dir) if p.suffix == ".service"]


def recorder_units(cfg: HoldfastConfig) -> tuple[list[str], list[str]]:
    """(camera recorder instances to run, those of the other layout to stop) per the config's
    ``[recorder] process_per``: a camera recorded by both would have two writers."""
    cams = [c for c in cfg.cameras if c.enabled]
    per_camera = [f"holdfast-recorder@{c.id}.service" for c in cams]
    per_site = [f"holdfast-site-recorder@{s}.service" for s in dict.fromkeys(c.site for c in cams)]
    return (per_site, per_camera) if cfg.recorder.process_per == "site" else (per_camera, per_site)


def rewrite_exec(text: str, holdfast_bin: str) -> str:
    """Point ExecStart at another `holdfast` executable (an install prefix, or a test stub)."""
    return text.replace(DEFAULT_HOLDFAST_BIN, holdfast_bin)


def instance_name(path: Path) -> str:
    """`foo@.service` -> `foo@test.service`: systemd-analyze verifies instances, not templates."""
    return path.name.replace("@.", "@test.") if "@." in path.name else path.name


def staged(unit_dir: Path, tmp: Path, holdfast_bin: Path) -> list[Path]:
    """Copy units into `tmp` with ExecStart pointing at an executable that exists.

    `systemd-analyze verify` checks that ExecStart's binary exists and is executable; on a build
    machine /opt/holdfast is not installed, so the copies point at `holdfast_bin` instead. Templates
    are copied as one instance each (verify refuses a bare template)."""
    out = []
    for p in unit_files(unit_dir):
        dst = tmp / instance_name(p)
        dst.write_text(rewrite_exec(p.read_text("utf-8"), str(holdfast_bin)), "utf-8")
        out.append(dst)
        if "@." in p.name:  # timers/others may refer to the template itself
            (tmp / p.name).write_text(dst.read_text("utf-8"), "utf-8")
    return out


def verify(unit_dir: Path = UNIT_DIR) -> tuple[int, str]:
    """Run `systemd-analyze verify` over every unit (staged copies); returns (rc, output)."""
    with tempfile.TemporaryDirectory() as td:
        tmp = Path(td)
        stub = tmp / "holdfast"
        stub.write_text("#!/bin/sh\nexit 0\n")
        stub.chmod(0o755)
        files = staged(unit_dir, tmp, stub)
        p = subprocess.run(
            ["systemd-analyze", "verify", *map(str, files)],
            capture_output=True,
            text=True,
            cwd=tmp,
            timeout=120,
        )
        return p.returncode, (p.stdout + p.stderr).replace(str(tmp) + "/", "")


def exposure(unit: Path) -> tuple[float, str]:
    """`systemd-analyze security --offline=true` overall exposure (0 = locked down, 10 = exposed)."""
    with tempfile.TemporaryDirectory() as td:
        dst = Path(td) / instance_name(unit)
        shutil.copyfile(unit, dst)
        p = subprocess.run(
            ["systemd-analyze", "security", "--offline=true", "--no-pager", str(dst)],
            capture_output=True,
            text=True,
            timeout=60,
        )
    m = _EXPOSURE_RE.search(p.stdout + p.stderr)
    if m is None:
        raise RuntimeError(f"systemd-analyze security gave no overall figure for {unit.name}: {p.stderr}")
    return float(m.group(1)), m.group(2)


def exposure_table(unit_dir: Path = UNIT_DIR) -> str:
    rows = ["| unit | exposure | rating |", "| --- | --- | --- |"]
    for u in services(unit_dir):
        score, rating = exposure(u)
        rows.append(f"| `{u.name}` | {score:.1f} | {rating} |")
    return "\n".join(rows)


if __name__ == "__main__":
    print(exposure_table())
