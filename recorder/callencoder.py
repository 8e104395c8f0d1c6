"""One part of a recorded call: PCM into an ffmpeg Opus encoder, its output into a sealed segment.

The plaintext exists only in this process's and ffmpeg's memory (pipes both ways), never in a
file; the recorder (recorder.calls) decides when a part starts, ends or is discarded.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import threading
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vault.errors import HoldfastError
from vault.store.spool import SpoolSegment

if TYPE_CHECKING:
    from recorder.calls import LineRecorder

#: Sealed chunk size for call audio. 24 kbit/s Opus fills 8 KiB in ~2.7 s, so a recorder killed
#: mid-call loses at most that much; the 16-byte tag per chunk costs 0.2 %.
CALL_CHUNK_SIZE = 8 * 1024


# A plain argument list like the camera recorder's: ffmpeg-python would add 5.3 MiB RSS to a
# capture process for one fixed list (recorder/ffmpeg.py, ffmpeg_command).
def ffmpeg_opus_cmd(rate: int, channels: int, bitrate: str, channel_map: list[str] | None) -> list[str]:
    """Raw s16le on stdin -> Ogg Opus on stdout; Ogg streams to a pipe and plays in Chromium."""
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        raise HoldfastError("ffmpeg not found on PATH (apt-get install ffmpeg)")
    cmd = [ffmpeg, "-hide_banner", "-nostats", "-loglevel", "error"]
    cmd += ["-f", "s16le", "-ar", str(rate), "-ac", str(channels), "-i", "pipe:0"]
    cmd += ["-c:a", "libopus", "-b:a", bitrate, "-application", "voip"]
    if channel_map:
        cmd += ["-metadata:s:a:0", f"HOLDFAST_CHANNELS={','.join(channel_map)}"]
    # One Ogg page per ~200 ms and no output buffering: sealed chunks follow the audio closely.
    cmd += ["-page_duration", "200000", "-flush_packets", "1", "-f", "ogg", "pipe:1"]
    return cmd


class Part:
    """One segment of a call: an ffmpeg encoder whose stdout is pumped into a SpoolSegment."""

    def __init__(self, rec: LineRecorder, index: int, start: datetime, meta: dict[str, Any]) -> None:
        self.index = index
        self.start = start
        self.samples = 0
        self.seg = SpoolSegment(rec.cfg.paths.spool, rec.recipient, meta, CALL_CHUNK_SIZE)
        self.segment_id = self.seg.segment_id
        self.error: str | None = None
        try:
            self.proc = subprocess.Popen(
                rec.encoder_cmd,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
        except OSError:
            self.seg.abort()
            raise
        assert self.proc.stdout is not None and self.proc.stdin is not None
        self._pump = threading.Thread(target=self._pump_loop, name=f"pump-{self.segment_id[:8]}", daemon=True)
        self._pump.start()

    def _pump_loop(self) -> None:
        fd = self.proc.stdout.fileno()  # type: ignore[union-attr]
        while True:
            data = os.read(fd, 65536)
            if not data:
                return
            if self.error is None:
                try:
                    self.seg.write(data)
                except OSError as e:  # disk full: keep draining ffmpeg, report at close
                    self.error = f"spool write failed: {e}"

    def feed(self, pcm: bytes, samples: int) -> None:
        try:
            self.proc.stdin.write(pcm)  # type: ignore[union-attr]
        except (BrokenPipeError, ValueError):
            if self.error is None:
                self.error = f"encoder exited early (status {self.proc.poll()})"
        self.samples += samples

    def finish(self) -> str | None:
        """Let ffmpeg flush; returns an error text or None."""
        with contextlib.suppress(BrokenPipeError):
            self.proc.stdin.close()  # type: ignore[union-attr]
        self._pump.join()
        err = self.proc.stderr.read().decode(errors="replace").strip()  # type: ignore[union-attr]
        rc = self.proc.wait()
        if rc != 0 and self.error is None:
            self.error = f"ffmpeg exited {rc}: {err[-300:]}"
        return self.error

    def close(self, trailer: dict[str, Any]) -> Path:
        path, _summary = self.seg.close(trailer)
        return path

    def discard(self) -> None:
        """Opt-out / too short: stop the encoder and delete the partial sealed file."""
        self.proc.kill()
        self._pump.join()
        self.proc.wait()
        for f in (self.proc.stdin, self.proc.stderr):
            with contextlib.suppress(OSError):
                f.close()  # type: ignore[union-attr]
        self.seg.abort()
