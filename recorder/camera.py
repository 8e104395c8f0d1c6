"""One camera's RTSP stream, stream-copied into sealed segments (`holdfast record camera`).

Pipeline (one `CameraRecorder` per camera, in its own thread of recorder/daemon.py's process, and
one ffmpeg child per connection)::

    camera --RTSP/TCP--> ffmpeg -c copy -f mp4 (fragmented, stdout pipe)    recorder/ffmpeg.py
           --> FragmentedMp4Reader (top-level boxes only, nothing decoded)  vault/media/mp4.py
           --> Segmenter: cut at keyframes, wall-clock starts, gaps         recorder/segmenter.py
           --> SpoolSegment.write per fragment (sealed chunk by chunk, plaintext only in memory)
           --> atomic rename into the spool when a segment closes; gaps as <id>.gap.json

This module is the loop around them, like Moonfire NVR's streamer: `CameraRecorder.run` retries
forever, `_connection` is one ffmpeg session (select over its pipes, stall detection, a drain on
SIGTERM), and the camera's lock keeps a second recorder of the same camera out. Retries back off
1 s doubling to 30 s; a cheap TCP probe cuts the wait short when an unreachable camera's port
comes back.

Memory budget: with per-camera units the process runs once per camera, next to its ffmpeg, and
the benchmark target is at most 1.5x bare ffmpeg's memory per camera (docs/benchmarks.md). So the
daemon runs with ``python -S`` on an explicit path, and its import closure leaves out what it can
do without: ``logging`` (vault.ops.events writes the same lines), ``subprocess``
(``os.posix_spawnp``), ``dataclasses``, ``hashlib`` (cryptography hashes) and cryptography's
``serialization`` (the CLI loads the PEM key and hands over its raw bytes).
tests/test_camera_budget.py keeps it so.
Fragments are cut every ``FRAGMENT_SECONDS`` (recorder/ffmpeg.py) as well as at keyframes, so the plaintext held in
memory is half a second of video whatever the camera's GOP length.
"""

from __future__ import annotations

import collections
import contextlib
import fcntl
import json
import os
import select
import signal
import socket
import time
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple
from urllib.parse import urlsplit

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey

from recorder.ffmpeg import (
    NOT_IN_MP4,
    READ_SIZE,
    FfmpegProcess,
    classify_exit,
    ffmpeg_command,
    is_unreachable,
    redact_url,
)
from recorder.segmenter import Clock, Segmenter, UnsupportedStream
from vault.errors import HoldfastError
from vault.media.mp4 import Fragment, FragmentedMp4Reader, Mp4Error
from vault.ops.events import DEBUG, ERROR, WARNING, EventLog, event
from vault.store.spool import PARTIAL_DIR, ensure_spool, recover_partials
from vault.timeutil import parse_iso, utcnow

if TYPE_CHECKING:
    from config.model import HoldfastConfig

log = EventLog("holdfast.recorder.camera")

BACKOFF_START = 1.0
BACKOFF_MAX = 30.0
#: After SIGINT, ffmpeg flushes its last fragment in ~200 ms; give up on it after this long.
STOP_DRAIN_SECONDS = 1.2
STATE_DIR = ".recorder"
EXIT_CONFIG = 78  # EX_CONFIG: the unit has RestartPreventExitStatus for it (no restart loop)


class RecorderError(HoldfastError):
    """The recorder cannot run at all (unknown or disabled camera, no public key)."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def tcp_open(host: str, port: int, timeout: float = 0.3) -> bool:
    """True when a TCP connect to host:port succeeds within `timeout` seconds."""
    # An ASCII host goes as bytes: a str host makes socket load the IDNA codec (0.3 MB).
    address = host.encode("ascii") if host.isascii() else host
    try:
        with socket.create_connection((address, port), timeout=timeout):
            return True
    except OSError:
        return False


class CameraSettings(NamedTuple):
    """Everything one camera's recorder needs, resolved from the validated configuration.

    Why a separate object: the daemon runs without pydantic, SQLAlchemy or the CLI (it runs once
    per camera), so the CLI validates the config, loads and checks the public key, and passes
    just this along.
    """

    id: str
    site: str
    url: str
    segment_seconds: float
    stall_seconds: float
    spool: Path
    seal_pub: Path
    #: The raw X25519 public key read from ``seal_pub`` (hex): the only key the recorder holds.
    seal_key: str

    @classmethod
    def from_config(cls, cfg: HoldfastConfig, camera_id: str) -> CameraSettings:
        from config.model import Camera
        from vault.sealed.keyid import raw_public
        from vault.sealed.keys import load_seal_public

        try:
            cam = cfg.source(camera_id)
        except KeyError as e:
            raise RecorderError(str(e.args[0]), EXIT_CONFIG) from None
        if not isinstance(cam, Camera):
            raise RecorderError(f"{camera_id!r} is a call line, not a camera", EXIT_CONFIG)
        if not cam.enabled:
            raise RecorderError(f"camera {camera_id!r} is disabled in the configuration", EXIT_CONFIG)
        seal_pub = Path(cfg.keys.dir) / "seal.pub"
        try:
            key = raw_public(load_seal_public(seal_pub)).hex()
        except HoldfastError as e:
            raise RecorderError(str(e)) from None
        return cls(
            cam.id,
            cam.site,
            cam.url,
            cam.segment_seconds,
            cam.stall_seconds,
            Path(cfg.paths.spool),
            seal_pub,
            key,
        )

    def to_dict(self) -> dict[str, Any]:
        return {k: str(v) if isinstance(v, Path) else v for k, v in self._asdict().items()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CameraSettings:
        return cls(
            str(d["id"]),
            str(d["site"]),
            str(d["url"]),
            float(d["segment_seconds"]),
            float(d["stall_seconds"]),
            Path(d["spool"]),
            Path(d["seal_pub"]),
            str(d["seal_key"]),
        )

    def recipient(self) -> X25519PublicKey:
        return X25519PublicKey.from_public_bytes(bytes.fromhex(self.seal_key))


class _Stop:
    """Set by a signal handler or another thread; wakes whatever the recorder is waiting on."""

    def __init__(self) -> None:
        self._set = False
        self.fd, self._wake = os.pipe()
        os.set_blocking(self._wake, False)

    def set(self) -> None:
        self._set = True
        with contextlib.suppress(BlockingIOError):  # full: already woken
            os.write(self._wake, b"x")

    def is_set(self) -> bool:
        return self._set

    def wait(self, timeout: float) -> bool:
        if not self._set:
            select.select([self.fd], [], [], max(0.0, timeout))
        return self._set


class CameraRecorder:
    """Records one camera until ``stop`` is set; see the module docstring for the rules."""

    def __init__(
        self,
        cam: CameraSettings,
        *,
        recipient: X25519PublicKey | None = None,
        ffmpeg: str = "ffmpeg",
        stop: _Stop | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.cam = cam
        self.spool = cam.spool
        self.recipient = recipient or cam.recipient()
        self.ffmpeg = ffmpeg
        #: Shared by the recorders that follow one another on a camera after errors (one pipe).
        self.stop = stop or _Stop()
        # What the daemon (recorder/daemon.py) reads to speak for the unit to systemd: READY once
        # a fragment was recorded, STATUS, and a heartbeat the watchdog ping depends on.
        self.ready = False
        self.recording = False
        self.status = f"connecting to {cam.id}"
        self.heartbeat = time.monotonic()
        self._last_fragment = time.monotonic()
        self._state_path = self.spool / STATE_DIR / f"{cam.id}.json"
        self._lock_fd: int | None = None
        self.segmenter = Segmenter(
            cam.id,
            cam.site,
            cam.segment_seconds,
            self.spool,
            self.recipient,
            self._state_path,
            clock,
        )

    # -- lifecycle ---------------------------------------------------------------------------

    def run(self) -> int:
        """Record until SIGTERM (``stop``); never gives up on the camera."""
        ensure_spool(self.spool)
        (self.spool / STATE_DIR).mkdir(exist_ok=True, mode=0o750)
        try:
            if self._lock():
                self._record()
        finally:
            self._unlock()
        return 0

    def _record(self) -> None:
        self._recover()
        event(log, "camera.start", camera=self.cam.id, url=redact_url(self.cam.url))
        delay = BACKOFF_START
        while not self.stop.is_set():
            started = utcnow()
            cause, recorded = self._connection()
            self.recording = False
            if self.stop.is_set():
                break
            if recorded:
                delay = BACKOFF_START
                self.segmenter.attempt_recorded()
            else:
                self.segmenter.attempt_failed(started, cause)
            event(
                log,
                "camera.unavailable" if not recorded else "camera.disconnected",
                WARNING,
                camera=self.cam.id,
                cause=cause,
                attempt=len(self.segmenter.failed_attempts),
                retry_in=delay,
            )
            self.status = f"reconnecting to {self.cam.id} in {delay:g} s: {cause}"
            self._backoff(delay, watch_port=is_unreachable(cause))
            if not recorded:
                delay = min(delay * 2, BACKOFF_MAX)
        self._shutdown()

    def _lock(self) -> bool:
        """Take the camera's lock, waiting while another process holds it; False if stopped first.

        Why: two recorders of one camera (a per-camera and a per-site unit both enabled, or a copy
        run by hand) would each recover the other's live partial segment as if it were killed.
        """
        path = self.spool / STATE_DIR / f"{self.cam.id}.lock"
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o640)
        delay = BACKOFF_START
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
                event(
                    log,
                    "camera.busy",
                    ERROR,
                    camera=self.cam.id,
                    holder_pid=holder,
                    fix="another recorder is recording this camera: stop it (holdfast-recorder@"
                    f"{self.cam.id} or holdfast-site-recorder@{self.cam.site}) or this one",
                    retry_in=delay,
                )
                self.status = f"waiting: {self.cam.id} is being recorded by pid {holder}"
                self._backoff(delay, watch_port=False)
                delay = min(delay * 2, BACKOFF_MAX)
                if self.stop.is_set():
                    os.close(fd)
                    return False
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._lock_fd = fd
        return True

    def _unlock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def _recover(self) -> None:
        """A killed predecessor's partial segment becomes a cut-short segment; its silence a gap."""
        pdir = self.spool / PARTIAL_DIR
        mtimes = [p.stat().st_mtime for p in pdir.glob(f"{self.cam.id}.*.seg.part")] if pdir.is_dir() else []
        recovered, dropped = recover_partials(self.spool, self.cam.id, "recorder killed")
        for p in dropped:
            event(
                log,
                "camera.partial_dropped",
                WARNING,
                camera=self.cam.id,
                path=p.name,
                reason="nothing complete was written before the recorder died",
            )
        last: datetime | None = None
        try:
            last = parse_iso(json.loads(self._state_path.read_text("utf-8"))["covered_until"], "state")
        except FileNotFoundError:
            pass
        except (ValueError, KeyError, TypeError) as e:
            event(log, "camera.state_unreadable", WARNING, camera=self.cam.id, error=str(e))
        if mtimes:
            killed_at = datetime.fromtimestamp(max(mtimes)).astimezone()
            last = max(last, killed_at) if last else killed_at
        if last is not None:
            self.segmenter.resume_after(
                last, "recorder killed" if (recovered or dropped) else "recorder not running"
            )
        if recovered or dropped:
            event(log, "camera.recovered", camera=self.cam.id, recovered=len(recovered), dropped=len(dropped))

    def _shutdown(self) -> None:
        self.segmenter.shutdown()
        self.status = f"stopped {self.cam.id}"
        event(log, "camera.stopped", camera=self.cam.id, segments=self.segmenter.segments_closed)

    def _backoff(self, delay: float, watch_port: bool) -> None:
        """Wait ``delay`` (or until stopped); an unreachable camera whose port opens ends it early.

        Why the probe: backoff keeps a dead camera from costing an ffmpeg start a second, but a
        camera back from a reboot should be recorded within seconds, not after the 30 s step.
        """
        parts = urlsplit(self.cam.url)
        host, port = parts.hostname or "", parts.port or (322 if parts.scheme == "rtsps" else 554)
        was_closed = watch_port and not tcp_open(host, port)
        deadline = time.monotonic() + delay
        while not self.stop.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                return
            self.stop.wait(min(left, 0.5))
            self._watchdog()
            if was_closed and tcp_open(host, port):
                event(log, "camera.port_open", camera=self.cam.id, waited=round(delay - left, 2))
                return

    # -- one connection ----------------------------------------------------------------------

    def _connection(self) -> tuple[str, bool]:
        """Run ffmpeg once, until it ends, stalls or we stop; returns (cause, recorded anything)."""
        cmd = ffmpeg_command(
            self.cam.url,
            self.cam.stall_seconds,
            self.ffmpeg,
            encode_audio=self.segmenter.audio_from is not None,
        )
        try:
            proc = FfmpegProcess(cmd)
        except OSError as e:
            return f"cannot start ffmpeg: {e}", False
        stderr: collections.deque[str] = collections.deque(maxlen=20)
        reader = FragmentedMp4Reader()
        self.segmenter.connection_started()
        recorded = False
        cause: str | None = None
        self._last_fragment = time.monotonic()
        drain_until: float | None = None
        try:
            while True:
                if self.stop.is_set() and drain_until is None:
                    proc.signal(signal.SIGINT)
                    drain_until = time.monotonic() + STOP_DRAIN_SECONDS
                    cause = "sigterm"
                fds = [proc.stdout] + ([proc.stderr] if proc.stderr is not None else [])
                if drain_until is None:
                    fds.append(self.stop.fd)  # readable for good once set: only until we act on it
                ready, _, _ = select.select(fds, [], [], 0.25)
                if proc.stderr is not None and proc.stderr in ready:
                    self._log_stderr(proc.read_stderr(), stderr)
                if proc.stdout in ready:
                    data = os.read(proc.stdout, READ_SIZE)
                    if not data:
                        break
                    try:
                        for item in reader.feed(data):
                            if isinstance(item, Fragment):
                                self._last_fragment = time.monotonic()  # any fragment: not stalled
                            if self.segmenter.on_item(item):
                                self._fragment_recorded()
                                recorded = True
                    except (Mp4Error, UnsupportedStream) as e:
                        cause = str(e) if isinstance(e, UnsupportedStream) else f"malformed stream: {e}"
                        proc.signal(signal.SIGKILL)
                        break
                now = time.monotonic()
                if drain_until is not None and now > drain_until:
                    proc.signal(signal.SIGKILL)
                    break
                if drain_until is None and now - self._last_fragment > self.cam.stall_seconds:
                    cause = f"stall (no fragment for {self.cam.stall_seconds:g} s)"
                    proc.signal(signal.SIGKILL)
                    break
                self._watchdog()
        finally:
            proc.close_stdout()  # an ffmpeg still writing gets EPIPE and exits
            rc = proc.wait()
            while proc.stderr is not None:  # ffmpeg is gone: the rest of its stderr is in the pipe
                self._log_stderr(proc.read_stderr(), stderr)
        not_in_mp4 = NOT_IN_MP4.search("\n".join(stderr))
        if not_in_mp4 and self.segmenter.audio_from is None and not recorded and not self.stop.is_set():
            # Copying failed on a codec MP4 cannot carry: audio, as far as we know (a video codec
            # fails again below with the encoder on, and is reported as it is).
            self.segmenter.audio_from = not_in_mp4[1]
            event(
                log,
                "camera.audio_encoded",
                WARNING,
                camera=self.cam.id,
                codec=self.segmenter.audio_from,
                detail="MP4 cannot carry this codec: audio is encoded to AAC from now on; video is still copied",
            )
            return self._connection()
        if cause is None:
            cause = classify_exit(rc, list(stderr))
        self.segmenter.connection_ended(cause)
        return cause, recorded

    def _log_stderr(self, lines: list[str], keep: collections.deque[str]) -> None:
        """ffmpeg's error lines, kept for the exit cause and logged (credentials redacted)."""
        for raw in lines:
            line = redact_url(raw)
            if line:
                keep.append(line)
                event(log, "camera.ffmpeg", DEBUG, camera=self.cam.id, line=line)

    def _fragment_recorded(self) -> None:
        """A fragment went into a segment: the unit is ready and says what it records."""
        self.ready = self.recording = True
        self.status = f"recording {self.cam.id} {self.segmenter.describe}"

    def _watchdog(self) -> None:
        """The loop is turning (fragments flowing, or deliberately backing off): the daemon pings
        systemd's watchdog only while every camera's heartbeat is fresh."""
        self.heartbeat = time.monotonic()

    def abandon(self) -> None:
        """After an unexpected error: let go of the open segment the way a kill would, so the next
        recorder for this camera recovers it (cut short, readable to its last whole chunk)."""
        self.segmenter.abandon()
        self._unlock()
