"""One camera's RTSP stream, stream-copied into sealed segments (`holdfast record camera`).

Pipeline (one `CameraRecorder` per camera, in its own thread of recorder/daemon.py's process, and
one ffmpeg child per connection)::

    camera --RTSP/TCP--> ffmpeg -c copy -f mp4 (fragmented, stdout pipe)
           --> FragmentedMp4Reader (top-level boxes only, nothing decoded)
           --> SpoolSegment.write per fragment (sealed chunk by chunk, plaintext only in memory)
           --> atomic rename into the spool when a segment closes; gaps as <id>.gap.json

Segmenting rule: a segment starts at a keyframe fragment and is cut at the first keyframe
fragment once it holds >= ``segment_seconds`` of media, so every segment is init (ftyp+moov) +
fragments: a standalone playable fragmented MP4.

Wall clock: at the first fragment of a connection the recorder anchors wall-clock time
(arrival minus the fragment's duration: ffmpeg emits a fragment when the next keyframe arrives)
and advances by media time after that, so consecutive segments abut exactly; every reconnect
re-anchors, and a start never moves before what is already recorded (no overlap).

Gaps: when ffmpeg exits or stalls the segment closes with its ``end_reason``; a gap from the last
recorded instant to the next segment's start is written when recording resumes (or at shutdown),
with the reason the stream ended and why reconnects failed. Retries back off 1 s doubling to 30 s,
forever; a cheap TCP probe cuts the wait short when an unreachable camera's port comes back.

Memory budget: with per-camera units the process runs once per camera, next to its ffmpeg, and
the benchmark target is at most 1.5x bare ffmpeg's memory per camera (docs/benchmarks.md). So the
daemon runs with ``python -S`` on an explicit path, and its import closure leaves out what it can
do without: ``logging`` (vault.events writes the same lines), ``subprocess``
(``os.posix_spawnp``), ``dataclasses``, ``hashlib`` (cryptography hashes) and cryptography's
``serialization`` (the CLI loads the PEM key and hands over its raw bytes).
tests/test_camera_budget.py keeps it so.
Fragments are cut every FRAGMENT_SECONDS as well as at keyframes, so the plaintext held in
memory is half a second of video whatever the camera's GOP length.
"""

from __future__ import annotations

import collections
import contextlib
import fcntl
import json
import os
import re
import select
import signal
import socket
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple
from urllib.parse import urlsplit

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey

from vault.errors import HoldfastError
from vault.events import DEBUG, ERROR, WARNING, EventLog, event
from vault.fsutil import atomic_write_bytes
from vault.mp4 import Box, Fragment, FragmentedMp4Reader, InitSegment, Mp4Error
from vault.spool import PARTIAL_DIR, SpoolSegment, ensure_spool, recover_partials, write_gap
from vault.timeutil import iso, parse_iso, utcnow

if TYPE_CHECKING:
    from config.model import HoldfastConfig

log = EventLog("holdfast.recorder.camera")

#: Sample-entry fourccs of the codecs the recorder accepts (H.264, H.265).
SUPPORTED_CODECS = {"avc1": "h264", "avc3": "h264", "hev1": "hevc", "hvc1": "hevc"}
#: What other sample entries ffmpeg writes for a camera's stream are, for the log line.
OTHER_CODECS = {
    "mp4v": "MPEG-4 Part 2 or Motion JPEG",
    "jpeg": "Motion JPEG",
    "vp08": "VP8",
    "vp09": "VP9",
    "av01": "AV1",
}
BACKOFF_START = 1.0
BACKOFF_MAX = 30.0
#: After SIGINT, ffmpeg flushes its last fragment in ~200 ms; give up on it after this long.
STOP_DRAIN_SECONDS = 1.2
#: Wall clock and media time may drift apart (camera clock); beyond this, re-anchor.
MAX_DRIFT_SECONDS = 2.0
READ_SIZE = 1 << 16  # a pipe holds 64 KiB: a larger read only allocates more
#: ffmpeg cuts a fragment at every keyframe and at least this often (``-frag_duration``), which
#: bounds what it and this process buffer to half a second of video, whatever the GOP length
#: (a camera with a 10 s GOP at 8 Mbit/s would otherwise hand over 10 MB fragments). 0.2 s
#: saved another 0.8 MB of heap per recorder but cost 0.1x of bare ffmpeg's CPU (bench/recorder.py).
FRAGMENT_SECONDS = 0.5
STATE_DIR = ".recorder"
EXIT_CONFIG = 78  # EX_CONFIG: the unit has RestartPreventExitStatus for it (no restart loop)


class RecorderError(HoldfastError):
    """The recorder cannot run at all (unknown or disabled camera, no public key)."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


class UnsupportedStream(Exception):
    """The camera sends something the recorder must not store as video (not H.264/H.265)."""


def redact_url(url: str) -> str:
    """The URL with any password replaced: logs and STATUS must never carry credentials."""
    return re.sub(r"(rtsps?://[^:/@\s]*):[^@/\s]*@", r"\1:***@", url)


#: ffmpeg's words when MP4 has no sample entry for a stream's codec: G.711 (pcm_mulaw, pcm_alaw)
#: and G.726, the audio many IP cameras send. With plain ``-c copy`` such a camera would never be
#: recorded at all.
NOT_IN_MP4 = re.compile(r"Could not find tag for codec (\S+) in stream #\d+")
#: What such audio is encoded to (the only encoding the recorder ever does; video is always
#: copied): AAC plays wherever the MP4 does.
AUDIO_ENCODER = ("-c:v", "copy", "-c:a", "aac", "-b:a", "64k")


# A plain argument list, not ffmpeg-python (which vault.media uses for every other ffmpeg run):
# importing `ffmpeg` here adds 5.3 MiB RSS to each recorder (measured over `import recorder.camera`:
# 23.8 MiB -> 29.1 MiB) to build one fixed list (budget: tests/test_camera_budget.py).
def ffmpeg_command(
    url: str, timeout_seconds: float, ffmpeg: str = "ffmpeg", *, encode_audio: bool = False
) -> list[str]:
    """Stream copy (never decode) to fragmented MP4 on stdout; ``-timeout`` is the RTSP socket
    I/O timeout in microseconds (ffmpeg 5.1's rtsp demuxer; ``-stimeout`` is gone).
    ``encode_audio``: audio MP4 cannot carry is encoded to AAC, video still copied."""
    return [
        ffmpeg,
        "-nostdin",
        "-hide_banner",
        "-loglevel",
        "error",
        "-rtsp_transport",
        "tcp",
        "-timeout",
        str(int(timeout_seconds * 1_000_000)),
        "-i",
        url,
        "-map",
        "0:v",
        "-map",
        "0:a?",
        *(AUDIO_ENCODER if encode_audio else ("-c", "copy")),
        "-f",
        "mp4",
        "-movflags",
        "+frag_keyframe+empty_moov+default_base_moof",
        "-frag_duration",
        str(int(FRAGMENT_SECONDS * 1_000_000)),
        "pipe:1",
    ]


_CAUSES: tuple[tuple[str, str], ...] = (
    (r"\b401\b|Unauthorized", "wrong credentials (RTSP 401 Unauthorized)"),
    (r"\b403\b|Forbidden", "access forbidden (RTSP 403 Forbidden)"),
    (r"\b404\b|Not Found", "no such stream on the camera (RTSP 404 Not Found)"),
    (r"Connection refused", "camera unreachable (connection refused)"),
    (r"[Tt]imed out|timeout", "camera unreachable (timed out)"),
    (r"No route to host|Network is unreachable|Host is unreachable", "camera unreachable (no route)"),
    (
        r"Name or service not known|Temporary failure in name resolution|not resolve",
        "camera unreachable (unknown host)",
    ),
    (r"Invalid data found|Protocol not found", "not an RTSP stream (invalid data)"),
)


def classify_exit(returncode: int, stderr_lines: list[str]) -> str:
    """Turn ffmpeg's exit status and last stderr lines into a cause an operator can act on."""
    text = "\n".join(stderr_lines)
    for pattern, cause in _CAUSES:
        if re.search(pattern, text):
            return cause
    m = NOT_IN_MP4.search(text)
    if m:
        return f"the camera's {m[1]} stream cannot be stored in MP4"
    if returncode == 0:
        return "stream ended"
    last = redact_url(stderr_lines[-1].strip()) if stderr_lines else "no error message"
    return f"ffmpeg exited {returncode}: {last}"


def is_unreachable(cause: str) -> bool:
    return cause.startswith("camera unreachable") or cause == "stream ended"


def _tcp_open(host: str, port: int, timeout: float = 0.3) -> bool:
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
        from vault.keyid import raw_public
        from vault.keys import load_seal_public

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


class _Open:
    """The segment being written: its spool handle and what its trailer will say."""

    __slots__ = ("spool", "start", "init_signature", "duration", "fragments")

    def __init__(self, spool: SpoolSegment, start: datetime, init_signature: str) -> None:
        self.spool = spool
        self.start = start
        self.init_signature = init_signature
        self.duration = 0.0
        self.fragments = 0


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


class _Ffmpeg:
    """One ffmpeg child: stdout and stderr on pipes, stdin on /dev/null, its own session.

    ``os.posix_spawnp`` rather than ``subprocess`` (0.4 MB per recorder; see the module doc).
    """

    def __init__(self, cmd: list[str]) -> None:
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        try:
            self.pid = os.posix_spawnp(
                cmd[0],
                cmd,
                os.environ,
                file_actions=[
                    (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                    (os.POSIX_SPAWN_DUP2, out_w, 1),
                    (os.POSIX_SPAWN_DUP2, err_w, 2),
                ],
                setsid=True,  # a terminal's Ctrl-C must not signal ffmpeg twice
            )
        except OSError:
            for fd in (out_r, err_r):
                os.close(fd)
            raise
        finally:
            os.close(out_w)
            os.close(err_w)
        self.stdout = out_r
        self.stderr: int | None = err_r
        self.returncode: int | None = None
        self._err_tail = b""

    def poll(self) -> int | None:
        if self.returncode is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def signal(self, sig: int) -> None:
        if self.poll() is None:  # never signal a reaped pid: it may be someone else's now
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, sig)

    def wait(self) -> int:
        if self.returncode is None:
            _, status = os.waitpid(self.pid, 0)
            self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def read_stderr(self) -> list[str]:
        """Complete lines now readable on stderr (all that is left, at end of file)."""
        if self.stderr is None:
            return []
        data = os.read(self.stderr, READ_SIZE)
        if not data:
            os.close(self.stderr)
            self.stderr = None
            data, self._err_tail = self._err_tail + b"\n", b""
        else:
            data, self._err_tail = self._err_tail + data, b""
        *lines, self._err_tail = data.split(b"\n")
        return [line.decode(errors="replace").rstrip() for line in lines]

    def close_stdout(self) -> None:
        if self.stdout >= 0:
            os.close(self.stdout)
            self.stdout = -1


class CameraRecorder:
    """Records one camera until ``stop`` is set; see the module docstring for the rules."""

    def __init__(
        self,
        cam: CameraSettings,
        *,
        recipient: X25519PublicKey | None = None,
        ffmpeg: str = "ffmpeg",
        stop: _Stop | None = None,
    ) -> None:
        self.cam = cam
        self.spool = cam.spool
        self.recipient = recipient or cam.recipient()
        self.ffmpeg = ffmpeg
        #: Shared by the recorders that follow one another on a camera after errors (one pipe).
        self.stop = stop or _Stop()
        self.seg: _Open | None = None
        #: (wall clock, media seconds) of this connection's first fragment.
        self.anchor: tuple[datetime, float] | None = None
        #: Everything before this instant is accounted for by a segment or a gap.
        self.covered_until: datetime | None = None
        #: A gap waiting for recording to resume: (start, reason).
        self.pending_gap: tuple[datetime, str] | None = None
        self.failed_attempts: list[str] = []
        # What the daemon (recorder/daemon.py) reads to speak for the unit to systemd: READY once
        # a fragment was recorded, STATUS, and a heartbeat the watchdog ping depends on.
        self.ready = False
        self.recording = False
        self.status = f"connecting to {cam.id}"
        self.heartbeat = time.monotonic()
        self._last_fragment = time.monotonic()
        self._state_path = self.spool / STATE_DIR / f"{cam.id}.json"
        self._lock_fd: int | None = None
        #: The camera's audio codec once it proved to be one MP4 cannot carry (then encoded).
        self.audio_from: str | None = None
        self.segments_closed = 0
        #: Cut at the first keyframe once this much is held: the target less a little slack, so a
        #: connection's first fragment (a frame or two short of a GOP) does not add a whole GOP.
        self._cut_at = cam.segment_seconds - min(0.5, 0.05 * cam.segment_seconds)

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
                self.failed_attempts = []
            else:
                self.failed_attempts.append(cause)
                if self.pending_gap is None and self.covered_until is None:
                    # Never recorded since start-up: the outage is explained from start-up on.
                    self.pending_gap = (started, cause)
            event(
                log,
                "camera.unavailable" if not recorded else "camera.disconnected",
                WARNING,
                camera=self.cam.id,
                cause=cause,
                attempt=len(self.failed_attempts),
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
            self.covered_until = last
            reason = "recorder killed" if (recovered or dropped) else "recorder not running"
            self.pending_gap = (last, reason)
        if recovered or dropped:
            event(log, "camera.recovered", camera=self.cam.id, recovered=len(recovered), dropped=len(dropped))

    def _shutdown(self) -> None:
        if self.seg is not None:
            self._close("sigterm")
        if self.pending_gap is not None:
            self._write_gap(utcnow(), suffix="; recorder stopped")
        self.status = f"stopped {self.cam.id}"
        event(log, "camera.stopped", camera=self.cam.id, segments=self.segments_closed)

    def _backoff(self, delay: float, watch_port: bool) -> None:
        """Wait ``delay`` (or until stopped); an unreachable camera whose port opens ends it early.

        Why the probe: backoff keeps a dead camera from costing an ffmpeg start a second, but a
        camera back from a reboot should be recorded within seconds, not after the 30 s step.
        """
        parts = urlsplit(self.cam.url)
        host, port = parts.hostname or "", parts.port or (322 if parts.scheme == "rtsps" else 554)
        was_closed = watch_port and not _tcp_open(host, port)
        deadline = time.monotonic() + delay
        while not self.stop.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                return
            self.stop.wait(min(left, 0.5))
            self._watchdog()
            if was_closed and _tcp_open(host, port):
                event(log, "camera.port_open", camera=self.cam.id, waited=round(delay - left, 2))
                return

    # -- one connection ----------------------------------------------------------------------

    def _connection(self) -> tuple[str, bool]:
        """Run ffmpeg once, until it ends, stalls or we stop; returns (cause, recorded anything)."""
        cmd = ffmpeg_command(
            self.cam.url, self.cam.stall_seconds, self.ffmpeg, encode_audio=self.audio_from is not None
        )
        try:
            proc = _Ffmpeg(cmd)
        except OSError as e:
            return f"cannot start ffmpeg: {e}", False
        stderr: collections.deque[str] = collections.deque(maxlen=20)
        reader = FragmentedMp4Reader()
        self.anchor = None
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
                            if self._on_item(item):
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
        if not_in_mp4 and self.audio_from is None and not recorded and not self.stop.is_set():
            # Copying failed on a codec MP4 cannot carry: audio, as far as we know (a video codec
            # fails again below with the encoder on, and is reported as it is).
            self.audio_from = not_in_mp4[1]
            event(
                log,
                "camera.audio_encoded",
                WARNING,
                camera=self.cam.id,
                codec=self.audio_from,
                detail="MP4 cannot carry this codec: audio is encoded to AAC from now on; video is still copied",
            )
            return self._connection()
        if cause is None:
            cause = classify_exit(rc, list(stderr))
        if self.seg is not None:
            self._close(cause)
        if self.covered_until is not None and self.pending_gap is None and cause != "sigterm":
            self.pending_gap = (self.covered_until, cause)
        return cause, recorded

    def _log_stderr(self, lines: list[str], keep: collections.deque[str]) -> None:
        """ffmpeg's error lines, kept for the exit cause and logged (credentials redacted)."""
        for raw in lines:
            line = redact_url(raw)
            if line:
                keep.append(line)
                event(log, "camera.ffmpeg", DEBUG, camera=self.cam.id, line=line)

    # -- boxes -------------------------------------------------------------------------------

    def _on_item(self, item: InitSegment | Fragment | Box) -> bool:
        """Handle one item from the reader; True when a fragment was recorded."""
        if isinstance(item, InitSegment):
            self._check_codec(item)
            if self.seg is not None and self.seg.init_signature != item.init_signature:
                self._close("parameters changed")
            return False
        if isinstance(item, Fragment):
            return self._on_fragment(item)
        return False  # sidx, free, ...: not needed for playback of fragments

    def _check_codec(self, init: InitSegment) -> None:
        video = init.video
        if video is None:
            raise UnsupportedStream("unsupported stream: no video track")
        if video.codec not in SUPPORTED_CODECS:
            name = OTHER_CODECS.get(video.codec, "an unknown codec")
            raise UnsupportedStream(
                f"unsupported codec: the camera sends {name} ({video.codec!r}); only H.264 and H.265 "
                "are recorded: set the camera's stream to H.264 or H.265"
            )

    def _on_fragment(self, frag: Fragment) -> bool:
        arrival = utcnow()
        self._last_fragment = time.monotonic()
        media = frag.decode_time_seconds
        if self.seg is None and not frag.is_keyframe:
            return False  # undecodable without its keyframe: a segment must start playable
        if media is None:
            media = (self.anchor[1] if self.anchor else 0.0) + (self.seg.duration if self.seg else 0.0)
        if self.anchor is None:
            self.anchor = (self._no_overlap(arrival - timedelta(seconds=frag.duration_seconds)), media)
        if self.seg is not None and frag.is_keyframe and self.seg.duration >= self._cut_at:
            self._close("segment length")
        if self.seg is None:
            start = self.anchor[0] + timedelta(seconds=media - self.anchor[1])
            observed = arrival - timedelta(seconds=frag.duration_seconds)
            if abs((observed - start).total_seconds()) > MAX_DRIFT_SECONDS:
                event(
                    log,
                    "camera.clock_drift",
                    WARNING,
                    camera=self.cam.id,
                    drift=round((observed - start).total_seconds(), 3),
                )
                start = self._no_overlap(observed)
                self.anchor = (start, media)
            self._open(frag, start)
        assert self.seg is not None
        self.seg.spool.write(frag.moof.data)  # two writes: joining them would copy the fragment
        self.seg.spool.write(frag.mdat.data)
        self.seg.duration += frag.duration_seconds
        self.seg.fragments += 1
        self.ready = self.recording = True
        return True

    def _no_overlap(self, start: datetime) -> datetime:
        return max(start, self.covered_until) if self.covered_until is not None else start

    def _open(self, frag: Fragment, start: datetime) -> None:
        init = frag.init
        video = init.video
        assert video is not None
        if self.pending_gap is not None:
            self._write_gap(start)
        meta: dict[str, Any] = {
            "source": self.cam.id,
            "site": self.cam.site,
            "kind": "video",
            "start": iso(start),
            "codec": SUPPORTED_CODECS.get(video.codec, video.codec),
            "sample_entry": video.codec,
            "width": video.width,
            "height": video.height,
            "init_signature": init.init_signature,
        }
        if init.audio is not None:
            meta["audio_codec"] = init.audio.codec
            if self.audio_from is not None:
                meta["audio_encoded_from"] = self.audio_from  # not the camera's own audio bits
        self.seg = _Open(SpoolSegment(self.spool, self.recipient, meta), start, init.init_signature)
        self.seg.spool.write(init.data)
        self.status = f"recording {self.cam.id} {video.width}x{video.height} {meta['codec']}"
        event(
            log,
            "camera.segment_open",
            DEBUG,
            camera=self.cam.id,
            segment=self.seg.spool.segment_id,
            start=iso(start),
        )

    def _close(self, reason: str) -> None:
        seg, self.seg = self.seg, None
        assert seg is not None
        end = seg.start + timedelta(seconds=seg.duration)
        trailer = {
            "end": iso(end),
            "duration": round(seg.duration, 6),
            "end_reason": reason,
            "fragments": seg.fragments,
        }
        # Saved before the rename that publishes the segment: a kill between the two then leaves
        # a partial that the restart recovers, never a "recorder not running" gap over a segment.
        self._covered(end)
        path, _summary = seg.spool.close(trailer)
        self.segments_closed += 1
        event(
            log,
            "camera.segment",
            camera=self.cam.id,
            segment=seg.spool.segment_id,
            start=iso(seg.start),
            duration=round(seg.duration, 3),
            end_reason=reason,
            fragments=seg.fragments,
        )

    def _write_gap(self, end: datetime, suffix: str = "") -> None:
        assert self.pending_gap is not None
        start, first = self.pending_gap
        self.pending_gap = None
        reason = first
        failures = [c for c in self.failed_attempts if c]
        if failures:
            reason += f"; {len(failures)} reconnect attempt(s) failed: {failures[-1]}"
        reason += suffix
        if end > start:
            write_gap(self.spool, self.cam.id, start, end, reason)
            event(
                log,
                "camera.gap",
                camera=self.cam.id,
                start=iso(start),
                end=iso(end),
                seconds=round((end - start).total_seconds(), 3),
                reason=reason,
            )
        self._covered(end)

    def _covered(self, until: datetime) -> None:
        """Remember what is accounted for, across restarts (a tiny JSON, no media)."""
        self.covered_until = until if self.covered_until is None else max(self.covered_until, until)
        atomic_write_bytes(self._state_path, json.dumps({"covered_until": iso(self.covered_until)}).encode())

    def _watchdog(self) -> None:
        """The loop is turning (fragments flowing, or deliberately backing off): the daemon pings
        systemd's watchdog only while every camera's heartbeat is fresh."""
        self.heartbeat = time.monotonic()

    def abandon(self) -> None:
        """After an unexpected error: let go of the open segment the way a kill would, so the next
        recorder for this camera recovers it (cut short, readable to its last whole chunk)."""
        seg, self.seg = self.seg, None
        if seg is not None:
            seg.spool.detach()
        self._unlock()
