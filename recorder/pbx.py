"""PBX recordings ingest: take a finished MixMonitor/FreeSWITCH file, seal it, remove the original.

`holdfast ingest-pbx` watches `[pbx] dir` (watchdog/inotify wakes it; a rescan every second
catches anything an event missed). A recording `NAME.wav|.opus|.ogg|.mp3` is taken only when

1. its size and mtime have not changed for `settle_seconds`, and
2. no process we can see (/proc/*/fd with a write-mode fdinfo) has it open for writing, and
3. its sidecar `NAME.json` exists, is equally settled, and is valid; the sidecar may arrive
   before or after the audio.

The file's bytes are sealed as they are (no transcode: the PBX's own encoding is the evidence and
Chromium plays WAV, Ogg/Opus and MP3) into the spool with the call metadata, then the plaintext
original and its sidecar are unlinked and the directory fsynced. A malformed sidecar or an
unreadable recording moves both files to `pbx/rejected/` with `NAME.reason.txt`; nothing is deleted.
Crash order and what unlink guarantees per filesystem: docs/benchmarks.md "Call recording".
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey

from config.model import HoldfastConfig
from vault.errors import HoldfastError
from vault.media.callmeta import SIDECAR_FIELDS, CallMeta, CallMetaError, validate
from vault.media.tools import MediaError, probe
from vault.ops.logsetup import event
from vault.sealed import keys
from vault.store.fsutil import fsync_dir
from vault.store.spool import PARTIAL_DIR, SEG_SUFFIX, SpoolSegment, ensure_spool
from vault.store.watch import DirectoryWatcher, listing
from vault.timeutil import iso

log = logging.getLogger("holdfast.pbx")

AUDIO_MIME = {
    ".wav": "audio/wav",
    ".opus": "audio/ogg; codecs=opus",
    ".ogg": "audio/ogg",
    ".mp3": "audio/mpeg",
}
REJECTED_DIR = "rejected"


class PbxError(HoldfastError):
    pass


class _Reject(Exception):
    """This recording can never be taken as it is; a person has to look at it."""


def open_for_writing(path: Path) -> bool:
    """True if any process visible to us holds `path` open with write access.

    Another user's processes are invisible without CAP_SYS_PTRACE (e.g. Asterisk running as
    `asterisk`), so this is a second guard behind the settle time, never the only one.
    """
    target = str(path)
    try:
        pids = [p for p in os.listdir("/proc") if p.isdigit()]
    except OSError:
        return False
    for pid in pids:
        fd_dir = f"/proc/{pid}/fd"
        try:
            fds = os.listdir(fd_dir)
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(f"{fd_dir}/{fd}") != target:
                    continue
                with open(f"/proc/{pid}/fdinfo/{fd}") as fi:
                    for line in fi:
                        if line.startswith("flags:"):
                            if int(line.split()[1], 8) & os.O_ACCMODE in (os.O_WRONLY, os.O_RDWR):
                                return True
                            break
            except OSError:
                continue
    return False


def _call_event(name: str, audio: Path, cm: CallMeta, **fields: Any) -> None:
    """One event about a recording: every one names its file, line and call id first."""
    event(log, name, file=audio.name, line=cm.line, call_id=cm.call_id, **fields)


@dataclass
class PbxStats:
    sealed: int = 0
    rejected: int = 0
    dropped: int = 0
    waiting: int = 0
    outcomes: dict[str, str] = field(default_factory=dict)


class PbxIngestor:
    @property
    def recipient(self) -> X25519PublicKey:
        """The current seal.pub, re-read after `keys rotate` (each new segment uses it)."""
        return self._seal_pub.current()

    def __init__(self, cfg: HoldfastConfig, clock: Callable[[], float] = time.monotonic) -> None:
        if cfg.pbx.dir is None:
            raise PbxError("[pbx] dir is not set in the configuration")
        self.cfg = cfg
        self.dir = cfg.pbx.dir
        self.settle = cfg.pbx.settle_seconds
        self.clock = clock
        self._seal_pub = keys.SealPublicFile(cfg.keys.dir / keys.SEAL_PUB)
        self._seen: dict[Path, tuple[tuple[int, int], float]] = {}
        self._waiting_logged: set[Path] = set()
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o750)
        ensure_spool(cfg.paths.spool)

    # -- readiness ----------------------------------------------------------------------------

    def _settled(self, path: Path) -> bool:
        """Unchanged (size, mtime) for settle_seconds, as observed by this process."""
        try:
            st = path.stat()
        except FileNotFoundError:
            self._seen.pop(path, None)
            return False
        key = (st.st_size, st.st_mtime_ns)
        now = self.clock()
        prev = self._seen.get(path)
        if prev is None or prev[0] != key:
            self._seen[path] = (key, now)
            return False
        return now - prev[1] >= self.settle

    def candidates(self) -> list[Path]:
        return listing(self.dir, lambda p: p.suffix.lower() in AUDIO_MIME and p.is_file())

    def consider(self, audio: Path) -> str:
        """One recording: growing | open | waiting-sidecar | sealed | rejected | dropped."""
        sidecar = audio.with_suffix(".json")
        audio_ok = self._settled(audio)
        side_ok = self._settled(sidecar)
        if not audio_ok:
            return "growing"
        if open_for_writing(audio):
            event(log, "pbx.still_open", logging.DEBUG, file=audio.name)
            return "open"
        if not sidecar.exists():
            if audio not in self._waiting_logged:
                self._waiting_logged.add(audio)
                event(log, "pbx.waiting_for_sidecar", file=audio.name, sidecar=sidecar.name)
            return "waiting-sidecar"
        if not side_ok or open_for_writing(sidecar):
            return "waiting-sidecar"
        try:
            return self._take(audio, sidecar)
        except _Reject as e:
            self._reject(audio, sidecar, str(e))
            return "rejected"

    # -- taking one recording -------------------------------------------------------------------

    def _read_sidecar(self, sidecar: Path) -> dict[str, Any]:
        try:
            body = json.loads(sidecar.read_bytes())
        except (ValueError, UnicodeDecodeError) as e:
            raise _Reject(f"sidecar {sidecar.name} is not valid JSON: {e}") from None
        if not isinstance(body, dict):
            raise _Reject(f"sidecar {sidecar.name} must be a JSON object")
        missing = [k for k in SIDECAR_FIELDS if k not in body]
        unknown = sorted(set(body) - set(SIDECAR_FIELDS))
        if missing:
            raise _Reject(f"sidecar {sidecar.name} lacks {', '.join(missing)}")
        if unknown:
            raise _Reject(f"sidecar {sidecar.name} has unknown fields {', '.join(unknown)}")
        return body

    def _take(self, audio: Path, sidecar: Path) -> str:
        body = self._read_sidecar(sidecar)
        try:
            cm = validate(self.cfg, **{k: body[k] for k in SIDECAR_FIELDS})
            meta = cm.to_meta(self.cfg)
        except CallMetaError as e:
            raise _Reject(f"sidecar {sidecar.name}: {e}") from None
        try:
            info = probe(audio)
        except MediaError as e:
            raise _Reject(f"{audio.name} is not a readable recording: {e}") from None
        if info.get("kind") != "audio":
            raise _Reject(f"{audio.name} has no audio stream (ffprobe says {info.get('kind')})")
        duration = float(info.get("duration") or 0.0)
        line = self.cfg.source(cm.line)
        if duration < getattr(line, "min_seconds", 0.0):
            self._remove(audio, sidecar)
            _call_event(
                "pbx.dropped", audio, cm, duration=round(duration, 3), reason="shorter than min_seconds"
            )
            return "dropped"
        # Same file, same id: a crash after the spool rename and before the unlink cannot
        # produce a second copy under a new id.
        seg_id = hashlib.sha256(f"pbx\0{cm.line}\0{cm.call_id}\0{audio.name}".encode()).hexdigest()[:32]
        final = self.cfg.paths.spool / f"{seg_id}{SEG_SUFFIX}"
        if not final.exists():
            meta.update(
                id=seg_id,
                origin="pbx",
                imported_from=audio.name,
                container=info.get("format"),
                audio_codec=info.get("audio_codec"),
                codec=info.get("audio_codec"),
                mime=AUDIO_MIME[audio.suffix.lower()],
                sample_rate=info.get("sample_rate"),
                channels=info.get("channels"),
                part=0,
                previous_segment=None,
            )
            stale = self.cfg.paths.spool / PARTIAL_DIR / f"{cm.line}.{seg_id}.seg.part"
            stale.unlink(missing_ok=True)  # our own from a run killed mid-seal
            seg = SpoolSegment(self.cfg.paths.spool, self.recipient, meta)
            try:
                with open(audio, "rb") as f:
                    while block := f.read(1 << 20):
                        seg.write(block)
            except BaseException:
                seg.abort()
                raise
            end = cm.start + timedelta(seconds=duration)
            seg.close(
                {
                    "end": iso(end),
                    "duration": duration,
                    "end_reason": "pbx-import",
                    "call_duration": duration,
                    "call_end": iso(end),
                    "parts": 1,
                }
            )
        self._remove(audio, sidecar)
        _call_event("pbx.sealed", audio, cm, segment=seg_id, duration=round(duration, 3))
        return "sealed"

    def _remove(self, audio: Path, sidecar: Path) -> None:
        audio.unlink(missing_ok=True)
        sidecar.unlink(missing_ok=True)
        fsync_dir(self.dir)
        self._seen.pop(audio, None)
        self._seen.pop(sidecar, None)
        self._waiting_logged.discard(audio)

    def _reject(self, audio: Path, sidecar: Path, reason: str) -> None:
        rdir = self.dir / REJECTED_DIR
        rdir.mkdir(exist_ok=True, mode=0o750)
        stem = audio.stem
        n = 0
        while (rdir / f"{stem}.reason.txt").exists():
            n += 1
            stem = f"{audio.stem}.{n}"
        (rdir / f"{stem}.reason.txt").write_text(reason + "\n", "utf-8")
        moved = []
        for p in (audio, sidecar):
            if p.exists():
                target = rdir / f"{stem}{p.suffix}"
                os.replace(p, target)
                moved.append(target.name)
        fsync_dir(rdir)
        fsync_dir(self.dir)
        self._seen.pop(audio, None)
        self._seen.pop(sidecar, None)
        event(
            log,
            "pbx.rejected",
            logging.WARNING,
            file=audio.name,
            moved_to=str(rdir),
            files=",".join(moved),
            reason=reason,
        )

    # -- loops -------------------------------------------------------------------------------------

    def scan(self) -> PbxStats:
        st = PbxStats()
        for audio in self.candidates():
            try:
                outcome = self.consider(audio)
            except OSError as e:  # e.g. spool full: leave the original, retry next pass
                event(log, "pbx.error", logging.ERROR, file=audio.name, error=str(e))
                outcome = "error"
            st.outcomes[audio.name] = outcome
            if outcome == "sealed":
                st.sealed += 1
            elif outcome == "rejected":
                st.rejected += 1
            elif outcome == "dropped":
                st.dropped += 1
            else:
                st.waiting += 1
        return st

    def run(
        self,
        stop: threading.Event,
        on_ready: Callable[[], None] | None = None,
        on_tick: Callable[[], None] | None = None,
    ) -> None:
        """Watch the directory (vault.store.watch); any event wakes the loop, which rescans every time
        (a file settles without an event), at least every second."""
        with DirectoryWatcher(self.dir, 0.0, any_change=True) as watcher:
            if on_ready is not None:
                on_ready()
            tick = min(1.0, self.settle / 2)
            while not stop.is_set():
                self.scan()
                if on_tick is not None:
                    on_tick()
                watcher.wait(tick)
                stop.wait(0.2)  # a file being written fires events constantly: don't spin
