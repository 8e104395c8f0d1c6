"""Drive ``rtsp_server.py`` (a real GstRtspServer) from tests, in a child process.

Why a child process: the gi bindings live in Debian's /usr/bin/python3, not in the venv, and a
separate process can be stopped and restarted to test the recorder's reconnect behaviour.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import IO, Any
from urllib.parse import quote

from recorder.camera import tcp_open

SYSTEM_PYTHON = "/usr/bin/python3"
SERVER_SCRIPT = Path(__file__).resolve().parents[2] / "appliance" / "rtsp_server.py"
START_TIMEOUT = 10.0
STOP_TIMEOUT = 5.0

#: Server options accepted as keyword arguments, mapped to command-line flags.
OPTIONS = (
    "width",
    "height",
    "fps",
    "bitrate",
    "gop",
    "pattern",
    "user",
    "password",
    "auth",
    "file",
    "codec",
    "audio",
)


def gst_rtsp_available() -> tuple[bool, str]:
    """Can /usr/bin/python3 import GstRtspServer? Returns (ok, reason) for pytest.skip."""
    if not os.access(SYSTEM_PYTHON, os.X_OK):
        return False, f"{SYSTEM_PYTHON} not found"
    code = "import gi; gi.require_version('GstRtspServer', '1.0'); from gi.repository import GstRtspServer"
    try:
        proc = subprocess.run(
            [SYSTEM_PYTHON, "-c", code], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, f"{SYSTEM_PYTHON} cannot run: {exc}"
    if proc.returncode != 0:
        last = proc.stderr.strip().splitlines()[-1:] or ["?"]
        return False, (
            f"{SYSTEM_PYTHON} cannot import gi GstRtspServer ({last[0]}); "
            "apt-get install -y python3-gi gir1.2-gst-rtsp-server-1.0"
        )
    return True, ""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_open(port: int, host: str = "127.0.0.1", timeout: float = 0.2) -> bool:
    """True when a TCP connect to host:port succeeds (the camera recorder's own check)."""
    return tcp_open(host, port, timeout)


class RtspServerError(RuntimeError):
    """The test RTSP server did not start (the message carries its stderr)."""


class RtspServer:
    """A real RTSP server on 127.0.0.1:port serving shared H.264 mounts.

    Options (keyword arguments): width, height, fps, bitrate (kbit/s), gop (key-int-max),
    pattern ("snow" = real bitrate, "ball" compresses), user + password (+ auth="digest" or
    "basic") to require credentials, file (loop a pre-encoded Annex-B .h264 file), codec ("h264"
    or "mjpeg" for the live encode), audio ("pcmu", "pcma" or "aac": a live tone beside the live video).
    Port 0 lets the server pick; ``port`` then holds the real one and restart() reuses it.
    """

    def __init__(self, port: int, mounts: list[str] | tuple[str, ...] = ("/office-1",), **opts: Any):
        unknown = set(opts) - set(OPTIONS)
        if unknown:
            raise TypeError(f"unknown RtspServer options: {sorted(unknown)}")
        if not mounts:
            raise ValueError("at least one mount is needed")
        self.port = port
        self.mounts = [m if m.startswith("/") else "/" + m for m in mounts]
        self.opts = {k: v for k, v in opts.items() if v is not None}
        self.proc: subprocess.Popen[str] | None = None
        self._stderr: IO[str] | None = None

    def command(self) -> list[str]:
        """The server's command line (for logs and for running it by hand)."""
        cmd = [SYSTEM_PYTHON, str(SERVER_SCRIPT), str(self.port)]
        for mount in self.mounts:
            cmd += ["--mount", mount]
        for key in OPTIONS:
            if key in self.opts:
                cmd += [f"--{key}", str(self.opts[key])]
        return cmd

    def start(self, timeout: float = START_TIMEOUT) -> RtspServer:
        """Start the server and wait (bounded) until its port accepts connections."""
        if self.running:
            return self
        # Closed in stop(); a file, not a pipe, so GStreamer chatter can never block the server.
        self._stderr = tempfile.TemporaryFile("w+", prefix="rtsp-server-", suffix=".log")  # noqa: SIM115
        # Own session: a Ctrl-C on pytest must not reach the server behind our back.
        self.proc = subprocess.Popen(
            self.command(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
            start_new_session=True,
        )
        ready: list[str] = []
        reader = threading.Thread(
            target=lambda: ready.append(self.proc.stdout.readline()),  # type: ignore[union-attr]
            daemon=True,
        )
        reader.start()
        deadline = time.monotonic() + timeout
        reader.join(timeout)
        line = ready[0].strip() if ready else ""
        if not line.startswith("READY port="):
            self._fail(f"no READY line within {timeout:.0f} s (got {line!r})")
        self.port = int(line.split("=", 1)[1])
        while not port_open(self.port):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self._fail(f"port {self.port} not accepting connections")
            time.sleep(0.02)
        return self

    def _fail(self, why: str) -> None:
        err = self.stderr_text()
        self.stop()
        raise RtspServerError(f"RTSP server failed to start: {why}\n{' '.join(self.command())}\n{err}")

    def stderr_text(self) -> str:
        """What the server wrote on stderr so far (GStreamer warnings, tracebacks)."""
        if self._stderr is None:
            return ""
        self._stderr.flush()
        self._stderr.seek(0)
        text = self._stderr.read()
        self._stderr.seek(0, os.SEEK_END)
        return text

    def stop(self, timeout: float = STOP_TIMEOUT) -> int | None:
        """SIGTERM the server, SIGKILL it if it lingers; returns its exit status."""
        proc, self.proc = self.proc, None
        status: int | None = None
        if proc is not None:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            status = proc.returncode
            if proc.stdout is not None:
                proc.stdout.close()
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None
        return status

    def restart(self, down_for: float = 0.0) -> RtspServer:
        """Stop, optionally stay down a while (a camera reboot), start on the same port."""
        self.stop()
        if down_for > 0:
            time.sleep(down_for)
        return self.start()

    def kill(self) -> None:
        """SIGKILL without cleanup: the camera vanishes mid-stream."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.stop()

    @property
    def running(self) -> bool:
        """True while the server process is alive."""
        return self.proc is not None and self.proc.poll() is None

    def url(self, mount: str | None = None, *, credentials: bool | tuple[str, str] = True) -> str:
        """rtsp:// URL of a mount (default the first one).

        credentials=True embeds the server's user/password if it has them, False none, and a
        (user, password) tuple embeds those (to test wrong credentials).
        """
        mount = mount or self.mounts[0]
        if not mount.startswith("/"):
            mount = "/" + mount
        userinfo = ""
        if credentials is True and "user" in self.opts:
            credentials = (str(self.opts["user"]), str(self.opts.get("password", "")))
        if isinstance(credentials, tuple):
            user, password = credentials
            userinfo = f"{quote(user, safe='')}:{quote(password, safe='')}@"
        return f"rtsp://{userinfo}127.0.0.1:{self.port}{mount}"

    def __enter__(self) -> RtspServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"RtspServer(port={self.port}, mounts={self.mounts}, opts={self.opts})"
