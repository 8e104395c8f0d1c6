"""A real appliance directory for tests: `holdfast init` output, the CLI run as a process."""

from __future__ import annotations

import atexit
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import config as config_pkg
from config.model import HoldfastConfig
from vault.vault import Vault

REPO = Path(__file__).resolve().parents[2]
HOLDFAST = [sys.executable, "-m", "cli.main"]


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
    scratch = app.cfg.paths.scratch
    if scratch.parent == Path("/dev/shm") and scratch.name.startswith("holdfast-"):
        atexit.register(shutil.rmtree, scratch, ignore_errors=True)
    return app
