"""Short-lived commands run by a supervisor (the demo, the soak), tracked so stopping ends them.

Each command runs in its own session, so a kill reaches what it started too (ffmpeg under a
`holdfast` call, paplay...). A supervisor's helper threads are daemon threads and die with it,
but their children would not: `kill_all` ends every command still running, and after `close`
no new one starts (a helper thread racing the stop gets a failed result instead).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading


class TrackedCommands:
    """Runs commands with one environment and remembers the ones still running."""

    def __init__(self, env: dict[str, str] | None = None) -> None:
        self.env = env
        self._lock = threading.Lock()
        self._running: set[subprocess.Popen[bytes]] = set()
        self._closed = False

    def run(
        self, cmd: list[str], input: bytes | None = None, timeout: float = 120
    ) -> subprocess.CompletedProcess[bytes]:
        """Run ``cmd`` to its end (killed after ``timeout`` s) and return its status and output."""
        with self._lock:
            if self._closed:
                return subprocess.CompletedProcess(cmd, 1, b"", b"stopping: no new commands")
            proc = subprocess.Popen(
                cmd,
                env=self.env,
                stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,
            )
            self._running.add(proc)
        try:
            out, err = proc.communicate(input, timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            out, err = proc.communicate()
        finally:
            with self._lock:
                self._running.discard(proc)
        return subprocess.CompletedProcess(cmd, proc.returncode, out, err)

    def close(self) -> None:
        """No command starts after this returns."""
        with self._lock:
            self._closed = True

    def kill_all(self) -> None:
        """SIGKILL the session of every command still running."""
        with self._lock:
            running = list(self._running)
        for proc in running:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
