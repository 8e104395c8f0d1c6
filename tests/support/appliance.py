"""A real appliance directory for tests: `holdfast init` output, the CLI run as a process."""

from __future__ import annotations

import atexit
import json
import os
import shutil
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

import config as config_pkg
from config.model import HoldfastConfig
from vault.vault import Vault

REPO = Path(__file__).resolve().parents[2]
HOLDFAST = [sys.executable, "-m", "cli.main"]
SHM = Path("/dev/shm")

#: The tmpfs scratches of appliances make_appliance made in this process. A test's daemons are
#: stopped by its own teardown, so they are removed at the end of the session (tests/conftest.py)
#: or, failing that, when the process exits.
_SCRATCHES: set[Path] = set()


def remove_appliance_scratches() -> None:
    """Remove every scratch make_appliance registered in this process."""
    for scratch in sorted(_SCRATCHES):
        shutil.rmtree(scratch, ignore_errors=True)
    _SCRATCHES.clear()


atexit.register(remove_appliance_scratches)


def tmpfs_scratch(config_path: Path) -> Path | None:
    """The `holdfast init` scratch a config names (/dev/shm/holdfast-<hash>), or None for any other.

    Read as plain TOML rather than loaded: a test may have left its config deliberately invalid."""
    try:
        scratch = tomllib.loads(config_path.read_text("utf-8"))["paths"]["scratch"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not isinstance(scratch, str):
        return None
    path = Path(scratch)
    return path if path.parent == SHM and path.name.startswith("holdfast-") else None


def remove_scratch(config_path: Path) -> None:
    """Remove the tmpfs scratch of the appliance configured in `config_path`, if it has one.
    Call it only once every process of that appliance is gone: a live one may create it again."""
    scratch = tmpfs_scratch(config_path)
    if scratch is not None:
        shutil.rmtree(scratch, ignore_errors=True)


def leftover_scratches(root: Path) -> dict[Path, Path]:
    """Each existing tmpfs scratch named by a `holdfast.toml` under `root`, with that config.

    Only configs under `root` count, so scratches of other processes sharing /dev/shm (other
    xdist workers, other runs) are never attributed to this one. The walk stays on root's
    filesystem: nothing mounted inside a test's directory (a systemd box) is searched."""
    found: dict[Path, Path] = {}
    try:
        dev = os.lstat(root).st_dev
    except OSError:
        return found
    for top, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if _same_device(Path(top) / d, dev)]
        if "holdfast.toml" in files:
            config_path = Path(top) / "holdfast.toml"
            scratch = tmpfs_scratch(config_path)
            if scratch is not None and scratch.exists():
                found[scratch] = config_path
    return found


def _same_device(path: Path, dev: int) -> bool:
    try:
        return os.lstat(path).st_dev == dev
    except OSError:
        return False


@dataclass
class Appliance:
    dir: Path
    config_path: Path

    @property
    def cfg(self) -> HoldfastConfig:
        return config_pkg.load(self.config_path)

    def vault(self) -> Vault:
        return Vault(self.cfg)

    def access_entries(self) -> list[dict]:  # type: ignore[type-arg]
        """Every access-log entry, oldest first, as the JSON objects the vault signed."""
        with self.vault() as v, v.sessions() as s:
            return [json.loads(text) for _seq, text in v.access_log.entries(s)]

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["HOLDFAST_CONFIG"] = str(self.config_path)
        env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
        return env

    def cli(
        self, *args: str, input: bytes | None = None, check: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess[bytes]:
        """Run `holdfast ARGS` as a separate process, as an operator would."""
        p = subprocess.run(
            [*HOLDFAST, *args], env=self.env(), capture_output=True, input=input, timeout=timeout
        )
        if check and p.returncode != 0:
            raise AssertionError(
                f"holdfast {' '.join(args)} exited {p.returncode}\nstdout: {p.stdout.decode(errors='replace')}\n"
                f"stderr: {p.stderr.decode(errors='replace')}"
            )
        return p

    def verify_export(self, zip_path: Path, *, check: bool = True) -> subprocess.CompletedProcess[bytes]:
        """`holdfast verify-export ZIP` against this appliance's public signing key, as a recipient
        of the export runs it."""
        pub = self.cfg.keys.dir / "sign.pub"
        return self.cli("verify-export", str(zip_path), "--pubkey", str(pub), check=check)

    def popen(self, *args: str, env: dict[str, str] | None = None, **kw: object) -> subprocess.Popen[bytes]:
        """`holdfast ARGS` in the background; ``env`` adds to the appliance's environment."""
        return subprocess.Popen([*HOLDFAST, *args], env={**self.env(), **(env or {})}, **kw)  # type: ignore[call-overload]


def make_appliance(directory: Path) -> Appliance:
    subprocess.run(
        [*HOLDFAST, "init", str(directory)],
        check=True,
        capture_output=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    app = Appliance(directory, directory / "holdfast.toml")
    # `holdfast init` puts the scratch on tmpfs beside, not inside, the directory pytest removes.
    scratch = tmpfs_scratch(app.config_path)
    if scratch is not None:
        _SCRATCHES.add(scratch)
    return app
