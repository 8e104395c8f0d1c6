"""Call control for a line's recorder: HTTP on a unix socket, its server and its client.

The telephony side (and `holdfast call start|stop|optout|pause|resume`) tells a line's recorder
(recorder.calls) where calls begin and end over `<paths.scratch>/calls-<LINE>/control.sock`:

    POST /calls/start   {"agent", "direction": "in"|"out", "remote", "call_id"?}
    POST /calls/stop    {}
    POST /calls/optout  {}
    POST /calls/pause   {}
    POST /calls/resume  {}
    GET  /status

Kept apart from the recorder so the client (a CLI command) loads neither PortAudio nor the
sealing code; the server only maps requests onto the recorder's methods.
"""

from __future__ import annotations

import http.client
import json
import logging
import os
import socket
import socketserver
import threading
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import TYPE_CHECKING, Any

from config.model import CallLine, HoldfastConfig
from vault.errors import HoldfastError
from vault.ops.logsetup import event

if TYPE_CHECKING:
    from recorder.calls import LineRecorder

log = logging.getLogger("holdfast.calls")

SOCKET_NAME = "control.sock"


class CallError(HoldfastError):
    """A call-control request that cannot be done now (no call active, one already active...)."""

    def __init__(self, message: str, status: int = 409) -> None:
        super().__init__(message)
        self.status = status


def control_socket_path(cfg: HoldfastConfig, line_id: str) -> Path:
    """Where a line's recorder listens; systemd's RuntimeDirectory=holdfast/calls-%i makes the dir."""
    return cfg.paths.scratch / f"calls-{line_id}" / SOCKET_NAME


def call_line(cfg: HoldfastConfig, line_id: str) -> CallLine:
    try:
        src = cfg.source(line_id)
    except KeyError as e:
        raise CallError(str(e.args[0]), 404) from None
    if not isinstance(src, CallLine):
        raise CallError(f"{line_id!r} is a camera, not a call line", 404)
    return src


# -- control server: HTTP on a unix socket -----------------------------------------------------


class _UnixHTTPServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


def _handler(rec: LineRecorder) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "holdfast-calls"

        def address_string(self) -> str:  # unix sockets have no peer address
            return "unix"

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
            return

        def _reply(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _body(self) -> dict[str, Any]:
            n = int(self.headers.get("Content-Length") or 0)
            if n > 65536:
                raise CallError("request body too large", 413)
            raw = self.rfile.read(n) if n else b"{}"
            try:
                body = json.loads(raw or b"{}")
            except ValueError:
                raise CallError("request body is not JSON", 400) from None
            if not isinstance(body, dict):
                raise CallError("request body must be a JSON object", 400)
            return body

        def do_GET(self) -> None:  # noqa: N802
            if self.path == "/status":
                self._reply(200, rec.status())
            else:
                self._reply(404, {"error": f"no such endpoint: GET {self.path}"})

        def do_POST(self) -> None:  # noqa: N802
            try:
                body = self._body()
                if self.path == "/calls/start":
                    unknown = set(body) - {"agent", "direction", "remote", "call_id"}
                    if unknown:
                        raise CallError(f"unknown fields: {', '.join(sorted(unknown))}", 400)
                    out = rec.start_call(
                        body.get("agent"), body.get("direction"), body.get("remote"), body.get("call_id")
                    )
                elif self.path == "/calls/stop":
                    out = rec.stop_call()
                elif self.path == "/calls/optout":
                    out = rec.optout()
                elif self.path == "/calls/pause":
                    out = rec.pause()
                elif self.path == "/calls/resume":
                    out = rec.resume()
                else:
                    self._reply(404, {"error": f"no such endpoint: POST {self.path}"})
                    return
            except CallError as e:
                self._reply(e.status, {"error": str(e)})
                return
            except Exception as e:  # an explicit answer beats a dropped connection
                event(
                    log,
                    "calls.control_error",
                    logging.ERROR,
                    path=self.path,
                    error=f"{type(e).__name__}: {e}",
                )
                self._reply(500, {"error": f"{type(e).__name__}: {e}"})
                return
            self._reply(200, out)

    return Handler


def serve_control(rec: LineRecorder, path: Path) -> _UnixHTTPServer:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o750)
    if path.exists() or path.is_symlink():
        # Left by a killed recorder: refuse only if something still answers on it.
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(str(path))
        except OSError:
            path.unlink()
        else:
            raise HoldfastError(f"{path}: another recorder for line {rec.line.id} is running")
        finally:
            probe.close()
    old = os.umask(0o117)  # owner and group (the CTI integration's group) may connect
    try:
        srv = _UnixHTTPServer(str(path), _handler(rec))
    finally:
        os.umask(old)
    threading.Thread(target=srv.serve_forever, name="control", daemon=True).start()
    return srv


# -- client, for `holdfast call ...` --------------------------------------------------------------


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: Path, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        s.connect(str(self._path))
        self.sock = s


def control_request(
    path: Path, method: str, url: str, body: dict[str, Any] | None = None, timeout: float = 30.0
) -> tuple[int, dict[str, Any]]:
    conn = _UnixConnection(path, timeout)
    try:
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": "application/json"} if data is not None else {}
        try:
            conn.request(method, url, body=data, headers=headers)
            resp = conn.getresponse()
            raw = resp.read()
        except (FileNotFoundError, ConnectionRefusedError):
            raise HoldfastError(
                f"no recorder is listening on {path} (is `holdfast record calls` running?)"
            ) from None
        try:
            out = json.loads(raw)
        except ValueError:
            out = {"error": raw.decode(errors="replace")}
        return resp.status, out
    finally:
        conn.close()


# -- the daemon -----------------------------------------------------------------------------------
