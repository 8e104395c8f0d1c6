"""Live call recording: PyAudio capture -> ffmpeg Opus on pipes -> sealed spool segment.

One process per call line (`holdfast record calls LINE`). The capture stream stays open all the
time (so a call's first syllable is not lost to device start-up); frames are discarded unless a
call is active. During a call, 16-bit PCM goes to an ffmpeg process on stdin and its Ogg Opus
output comes back on stdout straight into a `SpoolSegment`, which seals it chunk by chunk: the
plaintext exists only in this process's and ffmpeg's memory, never in a file, not even a temp one.

Call boundaries come from the telephony side over HTTP on a unix socket (recorder.callcontrol,
`<paths.scratch>/calls-<LINE>/control.sock`; `holdfast call start|stop|optout|pause|resume` use
it too). Pausing (card numbers, health details) discards audio from then on until resumed.

A call longer than `max_segment_seconds` is cut into parts sharing `call_id`; each part's meta
names its `part` index and `previous_segment`. Calls shorter than `min_seconds` are dropped and an
opt-out discards every part of the call still in the spool. While a call is paused the captured
audio never reaches the encoder (nothing of it is sealed); each part's trailer lists its pauses
(`pauses`: offset into the part's audio, wall-clock start and end, seconds), so the player shows
where audio was left out. See docs/benchmarks.md "Call recording".

At about 500 lines: the recorder's state machine (idle, call, pause, part cut) is one unit; the
encoder (recorder.callencoder) and the control socket (recorder.callcontrol) are apart.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey

from config.model import CallLine, HoldfastConfig
from recorder.callcontrol import CallError, call_line, control_socket_path, serve_control
from recorder.callencoder import Part, ffmpeg_opus_cmd
from vault.errors import HoldfastError
from vault.media.callmeta import CallMeta, CallMetaError, validate
from vault.ops.logsetup import event
from vault.ops.notify import notify, watchdog_interval
from vault.sealed import keys
from vault.store.fsutil import fsync_dir
from vault.store.spool import SEG_SUFFIX, ensure_spool, recover_partials, write_erasure
from vault.timeutil import iso, utcnow

log = logging.getLogger("holdfast.calls")

#: Capture buffer: 100 ms. Small enough for exact call boundaries, large enough to be cheap.
BUFFER_SECONDS = 0.1
#: Left = agent, right = caller when the device gives two channels (see docs/calls.md).
STEREO_CHANNEL_MAP = ["agent", "caller"]


class NoInputDevice(HoldfastError):
    """The line's sound device cannot be opened: restarting will not help until someone connects it
    or fixes `[[lines]] device`, so the daemon exits with EX_CONFIG (the unit does not restart)."""

    def __init__(self, line: CallLine, detail: str) -> None:
        super().__init__(
            f"line {line.id}: no usable sound input device {line.device!r} ({detail}); connect the line's "
            f"audio interface or set [[lines]] device to one of the input devices, or remove the line, "
            f"then `systemctl restart holdfast-calls@{line.id}`"
        )
        self.line = line.id


@dataclass
class ActiveCall:
    meta: CallMeta
    base_meta: dict[str, Any]
    current: Part
    samples: int = 0
    #: Captured while paused and discarded: keeps wall-clock times of later audio right.
    paused_samples: int = 0
    #: Wall-clock start of the pause in progress, None when recording.
    paused_at: datetime | None = None
    #: Pauses of the current part: {"offset", "start", "end", "seconds"} (closed ones have "end").
    pauses: list[dict[str, Any]] = field(default_factory=list)
    #: (segment id, spool path) of parts already closed, for opt-out.
    closed: list[tuple[str, Path]] = field(default_factory=list)
    finalizers: list[threading.Thread] = field(default_factory=list)
    failed_parts: list[str] = field(default_factory=list)


class LineRecorder:
    """Capture for one line, plus call state; thread-safe entry points for the control server."""

    @property
    def recipient(self) -> X25519PublicKey:
        """The current seal.pub, re-read after `keys rotate` (each new segment uses it)."""
        return self._seal_pub.current()

    def __init__(self, cfg: HoldfastConfig, line_id: str) -> None:
        self.cfg = cfg
        self.line = call_line(cfg, line_id)
        self._seal_pub = keys.SealPublicFile(cfg.keys.dir / keys.SEAL_PUB)
        ch = self.line.channels
        self.channel_map = STEREO_CHANNEL_MAP if ch == 2 else None
        self.encoder_cmd = ffmpeg_opus_cmd(self.line.rate, ch, self.line.opus_bitrate, self.channel_map)
        self.frame_bytes = 2 * ch
        self.max_part_samples = int(self.line.max_segment_seconds * self.line.rate)
        self._lock = threading.Lock()
        self.call: ActiveCall | None = None
        self.stop_event = threading.Event()
        self.capturing = False
        ensure_spool(cfg.paths.spool)

    # -- recovery after a crash ----------------------------------------------------------------

    def recover(self) -> None:
        """A previous recorder of this line was killed: close its partials as cut short."""
        recovered, dropped = recover_partials(
            self.cfg.paths.spool, self.line.id, "recorder died mid-call (recovered at restart)"
        )
        if recovered or dropped:
            event(log, "calls.recovered", line=self.line.id, recovered=len(recovered), dropped=len(dropped))

    # -- call control ----------------------------------------------------------------------------

    def _part_meta(
        self, call: ActiveCall | None, base: dict[str, Any], index: int, start: datetime, previous: str | None
    ) -> dict[str, Any]:
        meta = dict(base)
        meta.update(
            start=iso(start),
            part=index,
            previous_segment=previous,
            codec="opus",
            audio_codec="opus",
            container="ogg",
            mime="audio/ogg; codecs=opus",
            sample_rate=self.line.rate,
            channels=self.line.channels,
            bitrate=self.line.opus_bitrate,
        )
        if self.channel_map:
            meta["channel_map"] = self.channel_map
        return meta

    def start_call(self, agent: Any, direction: Any, remote: Any, call_id: Any = None) -> dict[str, Any]:
        start = utcnow()
        try:
            cm = validate(
                self.cfg,
                line=self.line.id,
                start=start,
                agent=agent,
                direction=direction,
                remote=remote if remote is not None else "",
                call_id=call_id if call_id not in (None, "") else uuid.uuid4().hex,
            )
            base = cm.to_meta(self.cfg)
        except CallMetaError as e:
            raise CallError(str(e), 400) from None
        with self._lock:
            if self.call is not None:
                raise CallError(f"line {self.line.id} already has an active call ({self.call.meta.call_id})")
            part = Part(self, 0, start, self._part_meta(None, base, 0, start, None))
            self.call = ActiveCall(meta=cm, base_meta=base, current=part)
        self._event("call.started", cm.call_id, direction=cm.direction, segment=part.segment_id)
        return {"line": self.line.id, "call_id": cm.call_id, "start": iso(start), "segment": part.segment_id}

    def _event(self, name: str, call_id: str, **fields: Any) -> None:
        """One event about a call: every one names its line and call id first."""
        event(log, name, line=self.line.id, call_id=call_id, **fields)

    def _take_call(self) -> ActiveCall:
        with self._lock:
            call = self.call
            if call is None:
                raise CallError(f"line {self.line.id} has no active call")
            self.call = None
        return call

    def stop_call(self, end_reason: str = "call-end") -> dict[str, Any]:
        call = self._take_call()
        self._close_pause(call)
        duration = call.samples / self.line.rate
        cm = call.meta
        for t in call.finalizers:
            t.join()
        if duration < self.line.min_seconds:
            call.current.discard()
            removed = self._remove_closed(call)
            self._event(
                "call.dropped",
                cm.call_id,
                duration=round(duration, 3),
                min_seconds=self.line.min_seconds,
                reason="shorter than min_seconds",
                parts_discarded=1 + len(removed),
            )
            return {"call_id": cm.call_id, "kept": False, "duration": duration, "reason": "too short"}
        end = cm.start + timedelta(seconds=(call.samples + call.paused_samples) / self.line.rate)
        part = call.current
        err = part.finish()
        trailer = {
            "end": iso(end),
            "duration": part.samples / self.line.rate,
            "end_reason": end_reason,
            "call_duration": duration,
            "call_end": iso(end),
            "parts": len(call.closed) + 1,
            "pauses": call.pauses,
            "call_paused_seconds": call.paused_samples / self.line.rate,
        }
        if err:
            trailer["encoder_error"] = err
        path = part.close(trailer)
        segments = [sid for sid, _ in call.closed] + [part.segment_id]
        self._event(
            "call.stopped",
            cm.call_id,
            duration=round(duration, 3),
            parts=len(segments),
            segment=part.segment_id,
            path=path.name,
        )
        return {"call_id": cm.call_id, "kept": True, "duration": duration, "segments": segments}

    def optout(self) -> dict[str, Any]:
        """The caller declined recording: discard every part; log the opt-out, never the audio."""
        call = self._take_call()
        for t in call.finalizers:
            t.join()
        call.current.discard()
        removed = self._remove_closed(call)
        already = [sid for sid, p in call.closed if p not in removed]
        if already:
            # Parts ingest already took: the vault shreds and purges them (reason erasure-request).
            write_erasure(
                self.cfg.paths.spool,
                already,
                f"caller opted out of call {call.meta.call_id}",
                f"call-line:{self.line.id}",
            )
        self._event(
            "call.optout",
            call.meta.call_id,
            parts_discarded=1 + len(removed),
            already_ingested=",".join(already) or "none",
            erasure_requested=bool(already),
        )
        return {"call_id": call.meta.call_id, "discarded": 1 + len(removed), "already_ingested": already}

    def pause(self) -> dict[str, Any]:
        """Stop keeping audio (the caller gives a card number): discarded before the encoder."""
        with self._lock:
            call = self.call
            if call is None:
                raise CallError(f"line {self.line.id} has no active call")
            if call.paused_at is not None:
                raise CallError(f"call {call.meta.call_id} on line {self.line.id} is already paused")
            now = self._wall(call)
            call.paused_at = now
            call.pauses.append({"offset": call.current.samples / self.line.rate, "start": iso(now)})
            cid = call.meta.call_id
        self._event("call.paused", cid, segment=call.current.segment_id)
        return {"line": self.line.id, "call_id": cid, "paused": True, "at": iso(now)}

    def resume(self) -> dict[str, Any]:
        with self._lock:
            call = self.call
            if call is None:
                raise CallError(f"line {self.line.id} has no active call")
            if call.paused_at is None:
                raise CallError(f"call {call.meta.call_id} on line {self.line.id} is not paused")
            seconds = self._close_pause(call)
            cid = call.meta.call_id
        self._event("call.resumed", cid, paused_seconds=round(seconds, 3))
        return {"line": self.line.id, "call_id": cid, "paused": False, "paused_seconds": seconds}

    def _wall(self, call: ActiveCall) -> datetime:
        """The capture clock: call start plus every sample captured since (kept or discarded)."""
        return call.meta.start + timedelta(seconds=(call.samples + call.paused_samples) / self.line.rate)

    def _close_pause(self, call: ActiveCall) -> float:
        """End the pause in progress (if any) at the capture clock; returns its length."""
        if call.paused_at is None:
            return 0.0
        end = self._wall(call)
        seconds = (end - call.paused_at).total_seconds()
        call.pauses[-1].update(end=iso(end), seconds=seconds)
        call.paused_at = None
        return seconds

    def _remove_closed(self, call: ActiveCall) -> list[Path]:
        """Delete closed parts still in the spool (ingest has not taken them yet)."""
        removed: list[Path] = []
        for _sid, path in call.closed:
            try:
                path.unlink()
                removed.append(path)
            except FileNotFoundError:
                continue
        if removed:
            fsync_dir(self.cfg.paths.spool)
        return removed

    def status(self) -> dict[str, Any]:
        with self._lock:
            call = self.call
            if call is None:
                return {"line": self.line.id, "capturing": self.capturing, "active": False}
            return {
                "line": self.line.id,
                "capturing": self.capturing,
                "active": True,
                "call_id": call.meta.call_id,
                "start": iso(call.meta.start),
                "seconds": call.samples / self.line.rate,
                "paused": call.paused_at is not None,
                "part": call.current.index,
                "segment": call.current.segment_id,
            }

    # -- audio path ------------------------------------------------------------------------------

    def feed(self, pcm: bytes) -> None:
        """Called by the capture loop with every buffer; only an active call keeps it."""
        with self._lock:
            call = self.call
            if call is None:
                return
            if call.paused_at is not None:
                call.paused_samples += len(pcm) // self.frame_bytes
                return
            while pcm:
                room = self.max_part_samples - call.current.samples
                n = min(room, len(pcm) // self.frame_bytes)
                if n > 0:
                    call.current.feed(pcm[: n * self.frame_bytes], n)
                    call.samples += n
                    pcm = pcm[n * self.frame_bytes :]
                if pcm:
                    self._rotate(call)

    def _rotate(self, call: ActiveCall) -> None:
        """Cut a long call: the next part starts now, the full one is closed in the background."""
        old = call.current
        start = self._wall(call)
        new = Part(
            self,
            old.index + 1,
            start,
            self._part_meta(call, call.base_meta, old.index + 1, start, old.segment_id),
        )
        call.current = new
        trailer = {
            "end": iso(start),
            "duration": old.samples / self.line.rate,
            "end_reason": "max-segment",
            "next_segment": new.segment_id,
            "pauses": call.pauses,
        }
        call.pauses = []
        final = self.cfg.paths.spool / f"{old.segment_id}{SEG_SUFFIX}"
        call.closed.append((old.segment_id, final))

        def finalize() -> None:
            err = old.finish()
            if err:
                trailer["encoder_error"] = err
            old.close(trailer)
            event(
                log,
                "call.part_closed",
                line=self.line.id,
                call_id=call.meta.call_id,
                part=old.index,
                segment=old.segment_id,
            )

        t = threading.Thread(target=finalize, name=f"finalize-{old.segment_id[:8]}", daemon=True)
        call.finalizers.append(t)
        t.start()

    def run(self, ready: threading.Event | None = None) -> None:
        """Open the device and capture until stop_event; this thread feeds every call."""
        import pyaudio  # imported here: PortAudio probes every sound API at import

        pa = pyaudio.PyAudio()
        try:
            dev = find_input_device(pa, self.line)
            frames = max(1, int(self.line.rate * BUFFER_SECONDS))
            try:
                stream = pa.open(
                    format=pyaudio.paInt16,
                    channels=self.line.channels,
                    rate=self.line.rate,
                    input=True,
                    input_device_index=dev,
                    frames_per_buffer=frames,
                )
            except OSError as e:
                raise NoInputDevice(
                    self.line,
                    f"cannot open it at {self.line.rate} Hz x {self.line.channels}: {e}; "
                    f"input devices: {', '.join(input_device_names(pa)) or 'none'}",
                ) from None
            event(
                log,
                "calls.capturing",
                line=self.line.id,
                device=self.line.device,
                rate=self.line.rate,
                channels=self.line.channels,
            )
            self.capturing = True
            if ready is not None:
                ready.set()
            wd = watchdog_interval()
            last_ping = time.monotonic()
            try:
                while not self.stop_event.is_set():
                    pcm = stream.read(frames, exception_on_overflow=False)
                    self.feed(pcm)
                    if wd is not None and time.monotonic() - last_ping >= wd:
                        notify("WATCHDOG=1")
                        last_ping = time.monotonic()
            finally:
                self.capturing = False
                stream.stop_stream()
                stream.close()
        finally:
            pa.terminate()

    def shutdown(self) -> None:
        """SIGTERM: keep the call recorded so far (if long enough), then stop capturing."""
        try:
            self.stop_call(end_reason="recorder-stopped")
        except CallError:
            pass
        finally:
            self.stop_event.set()


def input_device_names(pa: Any) -> list[str]:
    names = []
    for i in range(pa.get_device_count()):
        info = pa.get_device_info_by_index(i)
        if int(info.get("maxInputChannels", 0)) >= 1:
            names.append(str(info["name"]))
    return names


def find_input_device(pa: Any, line: CallLine) -> int | None:
    """`default` -> PortAudio's default input; otherwise the first input device whose name contains it."""
    name = line.device
    if name == "default":
        return None
    for i in range(pa.get_device_count()):
        info = pa.get_device_info_by_index(i)
        if int(info.get("maxInputChannels", 0)) >= 1 and (name == info["name"] or name in str(info["name"])):
            return i
    raise NoInputDevice(
        line, f"no input device matches; input devices: {', '.join(input_device_names(pa)) or 'none'}"
    )


def run_line(cfg: HoldfastConfig, line_id: str, socket_path: Path | None = None) -> int:
    """`holdfast record calls LINE`: recover, listen for call control, capture until SIGTERM."""
    import signal

    rec = LineRecorder(cfg, line_id)
    rec.recover()
    path = socket_path or control_socket_path(cfg, line_id)
    ready = threading.Event()

    def on_term(*_: Any) -> None:
        # From a helper thread: stop_call waits for ffmpeg, and the capture loop must keep running.
        threading.Thread(target=rec.shutdown, name="shutdown", daemon=True).start()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, on_term)
    srv = serve_control(rec, path)
    event(log, "calls.listening", line=line_id, socket=str(path))

    def announce() -> None:
        ready.wait()
        notify("READY=1", f"STATUS=line {line_id}: capturing, control socket {path}")

    threading.Thread(target=announce, daemon=True).start()
    try:
        rec.run(ready)
    finally:
        notify("STOPPING=1")
        srv.shutdown()
        srv.server_close()
        path.unlink(missing_ok=True)
        event(log, "calls.stopped", line=line_id)
    return 0
