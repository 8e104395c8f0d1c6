"""A stand-in for systemd's notify socket: a daemon started with NOTIFY_SOCKET pointing here
sends READY/STATUS/WATCHDOG datagrams exactly as it would to PID 1."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path


class NotifySocket:
    """Receives on a thread, so each message is timed when it arrives (watchdog spacing)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.2)
        #: (monotonic arrival, one assignment such as "READY=1") in arrival order.
        self.messages: list[tuple[float, str]] = []
        self._lock = threading.Lock()
        self._closed = False
        self._thread = threading.Thread(target=self._receive, daemon=True)
        self._thread.start()

    def _receive(self) -> None:
        while not self._closed:
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            now = time.monotonic()
            with self._lock:
                self.messages += [(now, line) for line in data.decode().splitlines() if line]

    def env(self, watchdog_seconds: float | None = None) -> dict[str, str]:
        env = {"NOTIFY_SOCKET": str(self.path)}
        if watchdog_seconds is not None:
            env["WATCHDOG_USEC"] = str(int(watchdog_seconds * 1e6))
        return env

    def poll(self) -> list[tuple[float, str]]:
        with self._lock:
            return list(self.messages)

    def values(self, key: str) -> list[str]:
        return [m.split("=", 1)[1] for _, m in self.poll() if m.startswith(key + "=")]

    def times(self, message: str) -> list[float]:
        return [t for t, m in self.poll() if m == message]

    def close(self) -> None:
        self._closed = True
        self._thread.join(2)
        self.sock.close()
