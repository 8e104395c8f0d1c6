"""The recorder process: one thread per camera, each with its own ffmpeg, and one voice to systemd.

Why one process may hold several cameras: what a recorder costs beyond its ffmpeg is mostly a
Python interpreter with cryptography loaded, about 10 MB that no two processes share. A per-camera
unit (``holdfast-recorder@CAMERA``) pays it per camera and isolates each camera in its own
process; a per-site unit (``holdfast-site-recorder@SITE``, ``[recorder] process_per = "site"``)
pays it once for all of a site's cameras (docs/benchmarks.md has both measured).

Inside the process each camera is a `CameraRecorder` in its own thread and keeps everything it
has alone: its ffmpeg child, stall timer, gaps, backoff and spool files. An unexpected error in
one camera never stops another: that camera's open segment is left as a kill would leave it, the
error is logged with where it happened, and the camera starts again with backoff (its partial is
then recovered, cut short). The threads share the GIL, which is idle almost all the time: the
recorders wait in ``select`` and AES-GCM runs in cryptography's native code.

systemd (Type=notify, NotifyAccess=main): READY once every camera has recorded a fragment,
STATUS with the cameras' states, and WATCHDOG only while every camera's loop is turning, so one
hung camera gets the unit restarted.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from pathlib import Path

from recorder.camera import BACKOFF_MAX, BACKOFF_START, CameraRecorder, CameraSettings, _Stop
from vault.errors import HoldfastError
from vault.ops.events import ERROR, EventLog, event, write_directly
from vault.ops.notify import notify, watchdog_interval

log = EventLog("holdfast.recorder.daemon")

#: How `holdfast record camera` hands the validated settings (a JSON list) to the daemon it execs.
SETTINGS_ENV = "HOLDFAST_CAMERA_SETTINGS"
#: How often the daemon looks at its cameras to tell systemd.
TICK_SECONDS = 0.5
#: A camera that ran this long before an error starts again at the first backoff step.
STABLE_SECONDS = 60.0
#: STATUS names at most this many cameras that are not recording.
STATUS_LISTED = 4


class RecorderDaemon:
    """Runs its cameras until ``stop`` is set (SIGTERM), then closes every segment."""

    def __init__(self, cams: list[CameraSettings], *, ffmpeg: str = "ffmpeg") -> None:
        if not cams:
            raise ValueError("a recorder needs at least one camera")
        self.ffmpeg = ffmpeg
        self.stop = _Stop()
        self.recorders = [CameraRecorder(c, ffmpeg=ffmpeg) for c in cams]
        self._ready_sent = False
        self._status = ""
        self._wd = watchdog_interval()
        self._wd_last = 0.0

    def run(self) -> int:
        threads = [
            threading.Thread(target=self._camera, args=(i,), name=f"camera-{r.cam.id}")
            for i, r in enumerate(self.recorders)
        ]
        for t in threads:
            t.start()
        while not self.stop.wait(TICK_SECONDS):
            self._report()
        notify("STOPPING=1", "STATUS=stopping: closing the last segments")
        for r in self.recorders:
            r.stop.set()
        for t in threads:
            t.join()
        notify(f"STATUS={self.summary()}")
        return 0

    def _camera(self, i: int) -> None:
        """One camera's thread: its recorder, started again after an unexpected error."""
        delay = BACKOFF_START
        while not self.stop.is_set():
            rec = self.recorders[i]
            started = time.monotonic()
            try:
                rec.run()
                return
            except Exception as e:  # noqa: BLE001 - one camera's fault must not stop the others
                rec.abandon()
                if time.monotonic() - started > STABLE_SECONDS:
                    delay = BACKOFF_START
                error = f"{type(e).__name__}: {e}"
                event(
                    log,
                    "camera.crashed",
                    ERROR,
                    camera=rec.cam.id,
                    error=error,
                    at=_where(e),
                    retry_in=delay,
                )
                rec.status = f"{rec.cam.id} failed ({error}); starting again in {delay:g} s"
                deadline = time.monotonic() + delay
                while not self.stop.is_set() and time.monotonic() < deadline:
                    rec.heartbeat = time.monotonic()  # waiting on purpose, not hung
                    self.stop.wait(min(TICK_SECONDS, deadline - time.monotonic()))
                delay = min(delay * 2, BACKOFF_MAX)
                # Fresh state from disk (its partial is recovered), the same stop pipe: a camera
                # that fails every 30 s for months must not leak a pipe each time.
                fresh = CameraRecorder(rec.cam, ffmpeg=self.ffmpeg, stop=rec.stop)
                fresh.ready = rec.ready
                self.recorders[i] = fresh

    def summary(self) -> str:
        recs = self.recorders
        if len(recs) == 1:
            return recs[0].status
        down = [r.status for r in recs if not r.recording]
        text = f"recording {len(recs) - len(down)}/{len(recs)} cameras"
        if down:
            text += "; " + "; ".join(down[:STATUS_LISTED])
            if len(down) > STATUS_LISTED:
                text += f"; and {len(down) - STATUS_LISTED} more"
        return text

    def _report(self) -> None:
        recs = self.recorders
        if not self._ready_sent and all(r.ready for r in recs):
            self._ready_sent = True
            notify("READY=1")
        status = self.summary()
        if status != self._status:
            self._status = status
            notify(f"STATUS={status}")
        if self._wd is None:
            return
        now = time.monotonic()
        if now - self._wd_last >= self._wd / 2 and all(now - r.heartbeat < self._wd for r in recs):
            self._wd_last = now
            notify("WATCHDOG=1")


def _where(e: BaseException) -> str:
    """Where it went wrong: the innermost Holdfast line, and the library line below it if any
    (no traceback module: see the memory budget in recorder/camera.py)."""
    root = str(Path(__file__).resolve().parents[1]) + os.sep
    ours = last = ""
    tb = e.__traceback__
    while tb is not None:
        name = tb.tb_frame.f_code.co_filename
        last = f"{os.path.basename(name)}:{tb.tb_lineno}"
        if name.startswith(root):
            ours = f"{name[len(root) :]}:{tb.tb_lineno}"
            last = ""
        tb = tb.tb_next
    return f"{ours} (in {last})" if ours and last else ours or last or "unknown"


def main(cams: list[CameraSettings]) -> int:
    """Record in this process: SIGTERM/SIGINT stop recording cleanly."""
    daemon = RecorderDaemon(cams)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: daemon.stop.set())
    return daemon.run()


def daemon_path() -> list[str]:
    """Where the daemon finds Holdfast and its few third-party modules when run with ``-S``."""
    import sysconfig

    here = str(Path(__file__).resolve().parents[1])
    paths = sysconfig.get_paths()
    out: list[str] = []
    for p in (here, paths["purelib"], paths["platlib"]):
        if p not in out:
            out.append(p)
    return out


def daemon_env(cams: list[CameraSettings]) -> dict[str, str]:
    return {
        **os.environ,
        SETTINGS_ENV: json.dumps([c.to_dict() for c in cams]),
        "PYTHONPATH": os.pathsep.join(daemon_path()),
    }


def exec_daemon(cams: list[CameraSettings], log_level: str) -> None:
    """Replace this (CLI) process with the lean daemon: same PID, so systemd's notify and
    watchdog bookkeeping (NotifyAccess=main) carry over. ``-S`` skips site (0.8 MB: the .pth
    hooks of the venv) for an explicit path; see recorder/camera.py on the memory budget."""
    argv = [sys.executable, "-S", "-m", "recorder.daemon", "--log-level", log_level]
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, argv, daemon_env(cams))


def _daemon(argv: list[str]) -> int:
    level = argv[argv.index("--log-level") + 1] if "--log-level" in argv else "INFO"
    write_directly(level)
    text = os.environ.pop(SETTINGS_ENV, None)
    if text is None:
        print(
            f"recorder.daemon: run `holdfast record camera CAMERA_ID` ({SETTINGS_ENV} not set)",
            file=sys.stderr,
        )
        return 2
    try:
        return main([CameraSettings.from_dict(d) for d in json.loads(text)])
    except HoldfastError as e:
        print(f"holdfast: {type(e).__name__}: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(_daemon(sys.argv[1:]))
