"""Real audio for call tests without sound hardware: a private PulseAudio with a null sink.

The sink's monitor is the default source, so `paplay --device=vsink` into the sink is what
PyAudio (PortAudio -> ALSA default -> Pulse) captures. HOME and XDG_RUNTIME_DIR point into a
temp dir, so the daemon, its socket and its cookie belong to the test alone.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

import numpy as np

from tests.support.scan import plaintext_media_files


class Pulse:
    def __init__(self, base: Path) -> None:
        for tool in ("pulseaudio", "pactl", "paplay", "sox"):
            if shutil.which(tool) is None:
                raise RuntimeError(
                    f"{tool} missing: apt-get install pulseaudio pulseaudio-utils sox espeak-ng libasound2-plugins"
                )
        self.home = base / "home"
        self.runtime = base / "run"
        self.home.mkdir(parents=True)
        self.runtime.mkdir(mode=0o700)
        self.env = {**os.environ, "HOME": str(self.home), "XDG_RUNTIME_DIR": str(self.runtime)}
        subprocess.run(
            [
                "pulseaudio",
                "--daemonize=yes",
                "--exit-idle-time=-1",
                "-n",
                "--load=module-null-sink sink_name=vsink",
                "--load=module-native-protocol-unix",
            ],
            env=self.env,
            check=True,
            capture_output=True,
            timeout=30,
        )
        subprocess.run(["pactl", "set-default-source", "vsink.monitor"], env=self.env, check=True, timeout=30)

    def play(self, wav: Path) -> None:
        subprocess.run(["paplay", "--device=vsink", str(wav)], env=self.env, check=True, timeout=60)

    def stop(self) -> None:
        """Kill exactly the daemon this object started (its pid file), nothing else."""
        pidfile = self.runtime / "pulse" / "pid"
        try:
            pid = int(pidfile.read_text().strip())
        except (OSError, ValueError):
            return
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        for _ in range(50):
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.1)


def tone_wav(path: Path, seconds: float, freq: float = 440.0, rate: int = 48000) -> Path:
    subprocess.run(
        [
            "sox",
            "-n",
            "-r",
            str(rate),
            "-c",
            "1",
            "-b",
            "16",
            str(path),
            "synth",
            str(seconds),
            "sine",
            str(freq),
            "vol",
            "0.5",
        ],
        check=True,
        timeout=30,
    )
    return path


def speech_wav(path: Path, text: str) -> Path:
    raw = path.with_suffix(".raw.wav")
    subprocess.run(["espeak-ng", "-w", str(raw), text], check=True, timeout=30, capture_output=True)
    subprocess.run(["sox", str(raw), "-r", "48000", "-c", "1", "-b", "16", str(path)], check=True, timeout=30)
    raw.unlink()
    return path


def decode_pcm(data: bytes, rate: int = 48000) -> np.ndarray:
    """Any container/codec on stdin -> mono float samples (ffmpeg, pipes only)."""
    p = subprocess.run(
        ["ffmpeg", "-v", "error", "-i", "pipe:0", "-f", "s16le", "-ac", "1", "-ar", str(rate), "pipe:1"],
        input=data,
        capture_output=True,
        timeout=60,
    )
    assert p.returncode == 0, p.stderr.decode(errors="replace")
    return np.frombuffer(p.stdout, dtype=np.int16).astype(np.float64)


def envelope(x: np.ndarray, rate: int = 48000, window: float = 0.01) -> np.ndarray:
    w = int(rate * window)
    n = len(x) // w
    return np.sqrt((x[: n * w].reshape(n, w) ** 2).mean(axis=1)) if n else np.zeros(0)


def loud_seconds(x: np.ndarray, rate: int = 48000) -> float:
    """How long the signal is above 10 % of its peak level (10 ms windows)."""
    e = envelope(x, rate)
    return float((e > 0.1 * e.max()).sum() * 0.01) if len(e) else 0.0


def peak_frequency(x: np.ndarray, rate: int = 48000) -> float:
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.argmax(spec) * rate / len(x))


def envelope_correlation(a: np.ndarray, b: np.ndarray, rate: int = 48000, overhang: float = 0.25) -> float:
    """Best normalised correlation of two signals' 10 ms envelopes over all lags.

    The shorter signal may stick out of the longer one by up to ``overhang`` seconds at either
    end: a PulseAudio null sink's monitor can miss the first sink-latency's worth (~80 ms) of a
    stream that starts playing into it (the sink rewinds what it had already rendered), which is
    the test rig's loss, not the recorder's.
    """
    ea, eb = envelope(a, rate), envelope(b, rate)
    ea = (ea - ea.mean()) / (ea.std() or 1)
    eb = (eb - eb.mean()) / (eb.std() or 1)
    if len(ea) < len(eb):
        ea, eb = eb, ea
    pad = np.zeros(int(overhang * 100))  # envelope samples are 10 ms
    c = np.correlate(np.concatenate([pad, ea, pad]), eb, mode="valid") / len(eb)
    return float(c.max())


def plaintext_hits(*dirs: Path) -> list[str]:
    """Files under dirs holding plaintext media (structural scan: see tests.support.scan)."""
    return [f"{p} @{off}: {fmt}" for p, off, fmt in plaintext_media_files(*dirs)]


class PlaintextWatch:
    """Scan spool and store every 100 ms for the whole test: plaintext must never appear."""

    def __init__(self, *dirs: Path) -> None:
        self.dirs = dirs
        self.hits: list[str] = []
        self.scans = 0
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._loop, daemon=True)
        self._t.start()

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.hits += plaintext_hits(*self.dirs)
            self.scans += 1
            self._stop.wait(0.1)

    def finish(self) -> list[str]:
        self._stop.set()
        self._t.join()
        self.hits += plaintext_hits(*self.dirs)
        return self.hits


def edit_config(path: Path, pattern: str, repl: str) -> None:
    text = path.read_text()
    new, n = re.subn(pattern, repl, text, count=1, flags=re.M)
    assert n == 1, f"no {pattern!r} in {path}"
    path.write_text(new)


#: Who and what a call recording's metadata names, in this order.
CALL_PARTY = ("agent", "direction", "remote", "call_id", "line")


def call_party(meta: dict[str, object]) -> tuple[object, ...]:
    """The CALL_PARTY fields of a call segment's metadata."""
    return tuple(meta[k] for k in CALL_PARTY)
