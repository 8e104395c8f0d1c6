"""Daemons supervised the way their systemd units run them, without systemd.

Each `Unit` is one `holdfast ...` command in its own process group with `Restart=always` and a
`RestartSec`: when its main process exits (crash, `kill -9`), every other process that belongs to
the unit is stopped, as systemd's control group would be, and the command starts again after
RestartSec. A unit's processes are found by an environment marker (`HOLDFAST_UNIT=<run>:<name>`)
that every child inherits (ffmpeg in its own session included), because without cgroups a
parent's death re-parents its children and their process group may differ.

Used by bench/soak.py (the whole-appliance soak) and its test.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

MARKER = "HOLDFAST_UNIT"


def processes_marked(prefix: str) -> dict[int, str]:
    """pid -> marker value of every live process whose environment has ``HOLDFAST_UNIT=prefix...``."""
    found: dict[int, str] = {}
    needle = f"{MARKER}={prefix}".encode()
    me = os.getpid()
    for d in Path("/proc").iterdir():
        if not d.name.isdigit() or int(d.name) == me:
            continue
        try:
            env = (d / "environ").read_bytes()
        except OSError:
            continue
        for item in env.split(b"\0"):
            if item.startswith(needle):
                found[int(d.name)] = item.split(b"=", 1)[1].decode(errors="replace")
                break
    return found


def _signal_all(pids: list[int], sig: int) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def unit_from_file(
    path: Path,
    *,
    name: str,
    instance: str = "",
    holdfast: list[str],
    config: Path,
    bin_path: str,
    etc_config: str,
) -> Unit:
    """A Unit with the [Service] section's ExecStart=, Environment=, Restart=, RestartSec= and
    RestartPreventExitStatus= of a shipped unit file, so a run uses the units' own command lines.

    ``bin_path`` (the installed `holdfast`) becomes ``holdfast`` (e.g. this checkout's Python),
    ``etc_config`` (the installed config path) becomes ``config``, and ``%i`` the instance.
    """
    section = ""
    fields: dict[str, list[str]] = {}
    for raw in path.read_text("utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line
            continue
        if section == "[Service]" and "=" in line:
            k, v = line.split("=", 1)
            fields.setdefault(k.strip(), []).append(v.strip().replace("%i", instance))

    def one(key: str, default: str = "") -> str:
        return fields.get(key, [default])[-1]

    exec_start = shlex.split(one("ExecStart"))
    if not exec_start or exec_start[0].lstrip("-@+!:") != bin_path:
        raise ValueError(f"{path.name}: ExecStart= does not run {bin_path}: {exec_start}")
    cmd = [*holdfast, *(str(config) if t == etc_config else t for t in exec_start[1:])]
    env: dict[str, str] = {}
    for item in fields.get("Environment", []):
        for kv in shlex.split(item):
            k, _, v = kv.partition("=")
            env[k] = str(config) if v == etc_config else v
    restart_sec = one("RestartSec", "0.1").removesuffix("s")
    return Unit(
        name=name,
        cmd=cmd,
        restart_sec=float(restart_sec),
        env=env,
        prevent_restart=tuple(int(x) for x in one("RestartPreventExitStatus").split() if x.isdigit()),
        restart=one("Type") != "oneshot" and one("Restart", "no") in ("always", "on-failure", "on-abnormal"),
    )


@dataclass
class Unit:
    """One daemon: its command, its restart policy and what happened to it."""

    name: str
    cmd: list[str]
    restart_sec: float
    #: Environment= of the unit, added to the supervisor's environment.
    env: dict[str, str] = field(default_factory=dict)
    #: Exit codes that stop the restarts (systemd RestartPreventExitStatus=): configuration errors.
    prevent_restart: tuple[int, ...] = (2,)
    #: False for a oneshot (the purge timer's service): it runs to completion and is not restarted.
    restart: bool = True
    proc: subprocess.Popen[bytes] | None = None
    log: IO[bytes] | None = None
    starts: int = 0
    kills: int = 0
    exits: list[int] = field(default_factory=list)
    failed: str | None = None
    enabled: bool = True
    restart_at: float | None = None
    last_start: float = 0.0

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


class Supervisor:
    """Start, watch, kill and restart units; `close()` leaves no process of the run behind."""

    def __init__(self, run_id: str, env: dict[str, str], logs: Path, say: Callable[[str], None] = print):
        self.run_id = run_id
        self.env = env
        self.logs = logs
        self.say = say
        self.units: dict[str, Unit] = {}
        self.lock = threading.RLock()
        self._stop = threading.Event()
        self._watcher: threading.Thread | None = None
        logs.mkdir(parents=True, exist_ok=True)

    def marker(self, name: str) -> str:
        return f"{self.run_id}:{name}"

    def add(self, unit: Unit, start: bool = True) -> Unit:
        with self.lock:
            self.units[unit.name] = unit
            if start:
                self._start(unit)
        return unit

    def _start(self, unit: Unit) -> None:
        if unit.log is None:
            unit.log = open(self.logs / f"{unit.name}.log", "ab")  # noqa: SIM115 - closed in close()
        unit.log.write(f"--- soak: start #{unit.starts + 1} at {time.time():.3f}\n".encode())
        unit.log.flush()
        unit.proc = subprocess.Popen(
            unit.cmd,
            env={**self.env, **unit.env, MARKER: self.marker(unit.name)},
            stdin=subprocess.DEVNULL,
            stdout=unit.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        unit.starts += 1
        unit.restart_at = None
        unit.last_start = time.monotonic()

    def start(self, name: str) -> None:
        """Start a unit now (a oneshot's timer firing); no-op while it runs."""
        with self.lock:
            u = self.units[name]
            u.enabled = True
            if not u.running:
                self._start(u)

    def _unit_pids(self, name: str) -> list[int]:
        want = self.marker(name)
        return [pid for pid, v in processes_marked(self.run_id + ":").items() if v == want]

    def _stop_rest(self, name: str, grace: float = 5.0) -> None:
        """After the main process is gone: SIGTERM the unit's leftovers, SIGKILL what lingers."""
        rest = self._unit_pids(name)
        if not rest:
            return
        _signal_all(rest, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and any(_alive(p) for p in rest):
            time.sleep(0.05)
        _signal_all([p for p in rest if _alive(p)], signal.SIGKILL)

    def kill9(self, name: str) -> bool:
        """`kill -9` of the unit's main PID (as `systemctl kill -s KILL --kill-whom=main`)."""
        with self.lock:
            u = self.units[name]
            if not u.running:
                return False
            assert u.proc is not None
            with contextlib.suppress(ProcessLookupError):
                os.kill(u.proc.pid, signal.SIGKILL)
            u.kills += 1
            u.log.write(f"--- soak: kill -9 at {time.time():.3f}\n".encode())  # type: ignore[union-attr]
            return True

    def stop(self, name: str, timeout: float = 20.0) -> int | None:
        """`systemctl stop`: SIGTERM the main process, SIGKILL after ``timeout``; no restart."""
        with self.lock:
            u = self.units[name]
            u.enabled = False
            u.restart_at = None
            proc = u.proc
        if proc is None:
            return None
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.say(f"{name} did not stop within {timeout:g} s: SIGKILL")
                proc.kill()
                proc.wait()
        self._stop_rest(name)
        return proc.returncode

    def _tick(self) -> None:
        now = time.monotonic()
        with self.lock:
            for u in self.units.values():
                if u.proc is None or u.proc.poll() is None:
                    continue
                if u.restart_at is None and not getattr(u.proc, "_soak_seen", False):
                    u.proc._soak_seen = True  # type: ignore[attr-defined]
                    rc = u.proc.returncode
                    u.exits.append(rc)
                    u.log.write(f"--- soak: exited {rc} at {time.time():.3f}\n".encode())  # type: ignore[union-attr]
                    u.log.flush()  # type: ignore[union-attr]
                    self._stop_rest(u.name)
                    if not u.enabled or not u.restart:
                        continue
                    if rc in u.prevent_restart:
                        u.failed = (
                            f"exited {rc} (RestartPreventExitStatus): see {self.logs / (u.name + '.log')}"
                        )
                        self.say(f"{u.name}: {u.failed}")
                        continue
                    u.restart_at = now + u.restart_sec
                if u.restart_at is not None and now >= u.restart_at and u.enabled:
                    self._start(u)

    def watch(self) -> None:
        """Restart exited units after their RestartSec, in a background thread, until close()."""

        def loop() -> None:
            while not self._stop.wait(0.1):
                self._tick()

        self._watcher = threading.Thread(target=loop, name="supervisor", daemon=True)
        self._watcher.start()

    def down(self, name: str) -> bool:
        """True while the unit is not running (killed and waiting for its restart)."""
        with self.lock:
            return not self.units[name].running

    def close(self, order: list[str] | None = None) -> None:
        """Stop every unit (in ``order`` first, then the rest), then any process of the run left."""
        self._stop.set()
        if self._watcher is not None:
            self._watcher.join(timeout=5)
        names = list(order or []) + [n for n in reversed(list(self.units)) if n not in (order or [])]
        for n in names:
            if n in self.units:
                try:
                    self.stop(n)
                except Exception as e:  # noqa: BLE001 - cleanup must go on to the next unit
                    self.say(f"stopping {n}: {e}")
        self.kill_everything()
        for u in self.units.values():
            if u.log is not None:
                u.log.close()
                u.log = None

    def kill_everything(self) -> None:
        """SIGKILL every process that carries this run's marker (nothing of ours survives)."""
        for _ in range(3):
            left = list(processes_marked(self.run_id + ":"))
            if not left:
                return
            _signal_all(left, signal.SIGKILL)
            time.sleep(0.2)
