"""Call recorder: real audio through a real PulseAudio, PortAudio and ffmpeg; no mocks.

Needs Debian's pulseaudio, pulseaudio-utils, libasound2-plugins, portaudio19-dev (PyAudio), sox,
espeak-ng and ffmpeg. Every test also scans spool and store for plaintext audio the whole time.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from recorder.callcontrol import control_request, control_socket_path
from tests.support.appliance import HOLDFAST, Appliance
from tests.support.audio import (
    PlaintextWatch,
    Pulse,
    call_party,
    decode_pcm,
    edit_config,
    envelope_correlation,
    loud_seconds,
    peak_frequency,
    speech_wav,
    tone_wav,
)
from tests.support.wait import wait_for

RATE = 48000


@pytest.fixture(scope="module")
def pulse(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pulse]:
    p = Pulse(tmp_path_factory.mktemp("pulse"))
    try:
        yield p
    finally:
        p.stop()


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("media")
    return {
        "tone3": tone_wav(d / "tone3.wav", 3.0, 440.0),
        "tone8": tone_wav(d / "tone8.wav", 8.0, 660.0),
        "speech": speech_wav(d / "speech.wav", "Hello, this is customer service. How can I help you today?"),
    }


class Recorder:
    """`holdfast record calls LINE` as a process, plus its control socket."""

    def __init__(self, app: Appliance, pulse: Pulse, line: str = "cs-1") -> None:
        self.app = app
        self.logpath = app.dir / f"record-{line}.log"
        self._log = open(self.logpath, "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [*HOLDFAST, "record", "calls", line],
            env={**app.env(), "HOME": pulse.env["HOME"], "XDG_RUNTIME_DIR": pulse.env["XDG_RUNTIME_DIR"]},
            stdout=subprocess.DEVNULL,
            stderr=self._log,
        )
        self.sock = control_socket_path(app.cfg, line)
        deadline = time.monotonic() + 60
        while True:
            assert self.proc.poll() is None, f"recorder exited {self.proc.returncode}: {self.log()[-2000:]}"
            if self.sock.exists():
                try:
                    status, body = control_request(self.sock, "GET", "/status", timeout=5)
                    if status == 200 and body.get("capturing"):
                        break
                except Exception:
                    pass
            assert time.monotonic() < deadline, f"recorder never started capturing: {self.log()[-2000:]}"
            time.sleep(0.2)
        # PulseAudio's monitor source delivers its first buffers late; let the stream settle.
        time.sleep(1.5)

    def req(self, url: str, body: dict | None = None) -> tuple[int, dict]:
        return control_request(self.sock, "POST", url, body if body is not None else {})

    def seconds(self) -> float:
        """Seconds of audio the active call has captured (0 without a call)."""
        _status, body = control_request(self.sock, "GET", "/status", timeout=10)
        return float(body.get("seconds") or 0.0)

    def wait_captured(self, since: float, margin: float = 0.3) -> None:
        """Wait until the call has captured as much audio as wall time passed since `since`
        (time.monotonic() taken before the call started), plus `margin`: everything played
        before now has come through PulseAudio's buffers into the call. A state, not a sleep:
        on a busy machine capture lags and this waits for it."""
        target = time.monotonic() - since + margin
        assert wait_for(lambda: self.seconds() >= target, 60, step=0.05), (target, self.log()[-2000:])

    def log(self) -> str:
        return self.logpath.read_text(errors="replace")

    def events(self, name: str) -> list[str]:
        return [
            ln for ln in self.log().splitlines() if f"event={name} " in ln or ln.endswith(f"event={name}")
        ]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=30)
        self._log.close()

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(timeout=30)
        self._log.close()


def _configure(app: Appliance, **line: str) -> None:
    for key, value in line.items():
        edit_config(app.config_path, r"^(min_seconds = 2\.0)$", rf"\1\n{key} = {value}")


def _segments(app: Appliance, *filters: str) -> list[dict]:
    return json.loads(app.cli("segments", "list", "--json", *filters).stdout)


def _audio(app: Appliance, seg_ids: list[str]) -> tuple[list[bytes], object]:
    import numpy as np

    blobs = [app.cli("segments", "cat", sid).stdout for sid in seg_ids]
    return blobs, np.concatenate([decode_pcm(b, RATE) for b in blobs])


@pytest.fixture
def watch(appliance: Appliance) -> Iterator[PlaintextWatch]:
    w = PlaintextWatch(appliance.cfg.paths.spool, appliance.cfg.paths.store)
    yield w
    assert w.finish() == [], "plaintext audio reached spool or store"
    assert w.scans > 0


@pytest.mark.slow
def test_tone_and_speech_captured_sealed_ingested_with_metadata(
    appliance: Appliance, pulse: Pulse, media: dict[str, Path], watch: PlaintextWatch
) -> None:
    _configure(appliance, max_segment_seconds="2.5")
    rec = Recorder(appliance, pulse)
    try:
        t_call = time.monotonic()
        out = appliance.cli(
            "call",
            "start",
            "--line",
            "cs-1",
            "--agent",
            "Anna Virtanen",
            "--direction",
            "in",
            "--remote",
            "+358 40 1234567",
            "--call-id",
            "pbx-4711",
        )
        assert json.loads(out.stdout)["call_id"] == "pbx-4711"
        pulse.play(media["tone3"])
        rec.wait_captured(t_call)
        stopped = json.loads(appliance.cli("call", "stop", "--line", "cs-1").stdout)
        assert stopped["kept"] is True and len(stopped["segments"]) >= 2  # cut at 2.5 s: linked parts

        t_call = time.monotonic()
        status, body = rec.req("/calls/start", {"agent": "Bo", "direction": "out", "remote": "100"})
        assert status == 200, body
        pulse.play(media["speech"])
        rec.wait_captured(t_call)
        status, speech_call = rec.req("/calls/stop")
        assert status == 200 and speech_call["kept"], speech_call
    finally:
        rec.stop()
    appliance.cli("ingest", "--once")

    parts = _segments(appliance, "--call-id", "pbx-4711")
    assert [p["id"] for p in parts] == stopped["segments"]
    for i, p in enumerate(parts):
        m = p["meta"]
        assert call_party(m) == ("Anna Virtanen", "in", "+358 40 1234567", "pbx-4711", "cs-1")
        assert m["part"] == i and m["previous_segment"] == (parts[i - 1]["id"] if i else None)
        assert m["call_start"] == parts[0]["start"] and p["retention_class"] == "call-audio"
        assert m["mime"] == "audio/ogg; codecs=opus"
    assert parts[-1]["meta"]["end_reason"] == "call-end"
    assert parts[-1]["meta"]["call_duration"] == pytest.approx(sum(p["duration"] for p in parts), abs=0.01)
    shown = json.loads(appliance.cli("segments", "show", parts[0]["id"]).stdout)
    assert shown["meta"]["agent"] == "Anna Virtanen" and shown["key_present"]

    blobs, pcm = _audio(appliance, [p["id"] for p in parts])
    assert all(b.startswith(b"OggS") for b in blobs)  # decrypted: an Ogg Opus stream per part
    decoded_seconds = len(pcm) / RATE
    assert decoded_seconds == pytest.approx(parts[-1]["meta"]["call_duration"], abs=0.2)
    assert loud_seconds(pcm) == pytest.approx(3.0, abs=0.2)
    assert peak_frequency(pcm) == pytest.approx(440.0, abs=3.0)

    # Filters through the vault query: agent and direction.
    assert {p["id"] for p in _segments(appliance, "--agent", "Anna Virtanen", "--direction", "in")} == {
        p["id"] for p in parts
    }
    speech_parts = _segments(appliance, "--agent", "Bo", "--direction", "out")
    assert [p["id"] for p in speech_parts] == speech_call["segments"]
    _blobs, speech_pcm = _audio(appliance, speech_call["segments"])
    import numpy as np

    source = decode_pcm(Path(media["speech"]).read_bytes(), RATE)
    assert envelope_correlation(np.asarray(speech_pcm), source) > 0.8


@pytest.mark.slow
def test_short_call_dropped_and_optout_discards_everything(
    appliance: Appliance, pulse: Pulse, media: dict[str, Path], watch: PlaintextWatch
) -> None:
    _configure(appliance, max_segment_seconds="2")
    spool = appliance.cfg.paths.spool
    rec = Recorder(appliance, pulse)
    try:
        status, _ = rec.req(
            "/calls/start", {"agent": "Anna", "direction": "in", "remote": "1", "call_id": "short"}
        )
        assert status == 200
        # Some audio, well under min_seconds (2 s): wait for captured audio, not for wall time.
        assert wait_for(lambda: rec.seconds() >= 0.5, 30, step=0.05), rec.log()[-2000:]
        status, body = rec.req("/calls/stop")
        assert status == 200 and body["kept"] is False, body
        assert len(rec.events("call.dropped")) == 1

        t_call = time.monotonic()
        status, _ = rec.req(
            "/calls/start", {"agent": "Anna", "direction": "in", "remote": "2", "call_id": "optout"}
        )
        assert status == 200
        pulse.play(media["tone3"])  # > 2 s: one part is already closed in the spool
        rec.wait_captured(t_call)
        status, body = rec.req("/calls/optout")
        assert status == 200 and body["discarded"] >= 2, body
        status, body = rec.req("/calls/stop")
        assert status == 409  # the call is gone
        optout_lines = rec.events("call.optout")
        assert len(optout_lines) == 1 and "call_id=optout" in optout_lines[0]
        assert not list(spool.glob("*.seg")) and not list((spool / ".partial").iterdir())
    finally:
        rec.stop()
    appliance.cli("ingest", "--once")
    assert _segments(appliance) == []
    assert not any(appliance.cfg.paths.store.rglob("*.seg*"))


def test_optout_after_a_part_was_ingested_erases_it_through_the_vault(
    appliance: Appliance, pulse: Pulse, media: dict[str, Path], watch: PlaintextWatch
) -> None:
    """A long call's early parts may be ingested before the caller opts out: the recorder cannot
    touch the index, so it spools an erasure request; ingest shreds, the purger deletes and logs."""
    from sqlalchemy import select

    from tests.support.retention import set_purge
    from vault.index.schema import PurgeLogRow, Segment

    _configure(appliance, max_segment_seconds="2")
    set_purge(appliance, require_clock_sync=False)
    rec = Recorder(appliance, pulse)
    try:
        status, _ = rec.req(
            "/calls/start", {"agent": "Anna", "direction": "in", "remote": "4", "call_id": "late"}
        )
        assert status == 200
        pulse.play(media["tone3"])  # > 2 s: the first part closes
        # The call keeps recording while we look: on a busy machine a second part may close
        # before ingest scans. Wait for the state (a closed part in the spool), then take
        # whatever ingest indexed, one part or more; the opt-out must erase exactly those.
        spool = appliance.cfg.paths.spool
        assert wait_for(lambda: list(spool.glob("*.seg")), timeout=60), rec.log()[-2000:]
        out = appliance.cli("ingest", "--once").stdout.decode()
        ingested = [s["id"] for s in _segments(appliance)]
        assert ingested and f"indexed={len(ingested)}" in out, out
        status, body = rec.req("/calls/optout")
        assert status == 200 and body["already_ingested"] == ingested, body
    finally:
        rec.stop()
    out = appliance.cli("ingest", "--once").stdout.decode()
    assert "erasures=1" in out, out
    with appliance.vault() as v, v.sessions() as s:
        for sid in ingested:
            seg = s.get(Segment, sid)
            assert seg is not None and seg.state == "purging" and seg.envelope is None  # shredded now
    appliance.cli("purge")
    assert _segments(appliance) == []
    with appliance.vault() as v, v.sessions() as s:
        rows = s.scalars(select(PurgeLogRow)).all()
        assert sorted(r.segment_id for r in rows) == sorted(ingested)
        assert {r.reason for r in rows} == {"erasure-request"}
    assert not any(p.is_file() for p in appliance.cfg.paths.store.rglob("*"))


@pytest.mark.slow
def test_sigkill_mid_call_leaves_cut_short_readable_segment(
    appliance: Appliance, pulse: Pulse, media: dict[str, Path], watch: PlaintextWatch
) -> None:
    rec = Recorder(appliance, pulse)
    status, _ = rec.req(
        "/calls/start", {"agent": "Anna", "direction": "in", "remote": "3", "call_id": "killed"}
    )
    assert status == 200
    player = subprocess.Popen(["paplay", "--device=vsink", str(media["tone8"])], env=pulse.env)
    try:
        partial_dir = appliance.cfg.paths.spool / ".partial"
        deadline = time.monotonic() + 30
        # Wait until at least two sealed chunks (8 KiB each) are on disk, then kill -9.
        while sum(p.stat().st_size for p in partial_dir.iterdir()) < 2 * 8192 + 400:
            assert time.monotonic() < deadline
            time.sleep(0.2)
        rec.kill()
    finally:
        player.wait(timeout=30)
    assert list(partial_dir.iterdir()), "the killed recorder's partial segment is gone"

    rec2 = Recorder(appliance, pulse)  # restart: recovers the partial as cut short
    rec2.stop()
    assert len(rec2.events("spool.partial_recovered")) == 1
    appliance.cli("ingest", "--once")
    (seg,) = _segments(appliance)
    assert seg["cut_short"] is True and seg["meta"]["call_id"] == "killed"
    _blobs, pcm = _audio(appliance, [seg["id"]])
    assert len(pcm) / RATE > 2.0
    assert peak_frequency(pcm) == pytest.approx(660.0, abs=3.0)


def _band_energy(x: object, freq: float, rate: int = RATE, width: float = 20.0) -> float:
    import numpy as np

    a = np.asarray(x)
    spec = np.abs(np.fft.rfft(a * np.hanning(len(a)))) ** 2
    f = np.fft.rfftfreq(len(a), 1 / rate)
    return float(spec[(f > freq - width) & (f < freq + width)].sum())


@pytest.mark.slow
def test_paused_stretch_is_never_recorded(
    appliance: Appliance, pulse: Pulse, media: dict[str, Path], watch: PlaintextWatch, tmp_path: Path
) -> None:
    """A 1 kHz tone played during the pause is absent; the 440 Hz tones around it are kept."""
    _configure(appliance, max_segment_seconds="600")

    def padded(name: str, freq: float) -> Path:
        # Silence before and after: what is still in PulseAudio's pipeline at a pause/resume is quiet.
        out = tmp_path / name
        subprocess.run(
            ["sox", str(tone_wav(tmp_path / f"raw-{name}", 2.0, freq)), str(out), "pad", "0.3", "0.6"],
            check=True,
            timeout=30,
        )
        return out

    kept, secret = padded("kept.wav", 440.0), padded("secret.wav", 1000.0)
    rec = Recorder(appliance, pulse)
    try:
        appliance.cli(
            "call", "start", "--line", "cs-1", "--agent", "Anna", "--direction", "in", "--remote", "1",
            "--call-id", "paused",
        )  # fmt: skip
        pulse.play(kept)
        paused = json.loads(appliance.cli("call", "pause", "--line", "cs-1").stdout)
        assert paused["paused"] is True
        status, body = control_request(rec.sock, "GET", "/status")
        assert status == 200 and body["paused"] is True
        pulse.play(secret)  # e.g. the caller reads out a card number
        again = appliance.cli("call", "pause", "--line", "cs-1", check=False)
        assert again.returncode == 1 and b"already paused" in again.stderr
        status, resumed = rec.req("/calls/resume")  # the control socket does the same
        assert status == 200 and resumed["paused_seconds"] > 2.0, resumed
        pulse.play(kept)
        stopped = json.loads(appliance.cli("call", "stop", "--line", "cs-1").stdout)
        assert stopped["kept"] is True
        assert len(rec.events("call.paused")) == 1 and len(rec.events("call.resumed")) == 1
    finally:
        rec.stop()
    appliance.cli("ingest", "--once")

    (seg,) = _segments(appliance, "--call-id", "paused")
    (pause,) = seg["meta"]["pauses"]
    # After the first padded tone (2.9 s) plus however long the CLI took; before the second.
    assert 2.5 < pause["offset"] < seg["duration"] - 2.5, pause
    assert pause["seconds"] == pytest.approx(resumed["paused_seconds"])
    assert pause["start"] < pause["end"]
    assert seg["meta"]["call_paused_seconds"] == pytest.approx(pause["seconds"])
    # The segment spans the call's wall-clock time; its audio leaves the pause out.
    assert seg["meta"]["call_duration"] == pytest.approx(seg["duration"])

    _blobs, pcm = _audio(appliance, [seg["id"]])
    assert len(pcm) / RATE == pytest.approx(seg["duration"], abs=0.2)
    assert loud_seconds(pcm) == pytest.approx(4.0, abs=0.3)  # two 2 s tones, not three
    assert peak_frequency(pcm) == pytest.approx(440.0, abs=3.0)
    assert _band_energy(pcm, 1000.0) < 1e-4 * _band_energy(pcm, 440.0), "paused audio was recorded"


def test_call_control_errors_are_explicit(appliance: Appliance) -> None:
    p = appliance.cli("call", "stop", "--line", "cs-1", check=False)
    assert p.returncode == 1 and b"no recorder is listening" in p.stderr
    p = appliance.cli(
        "call", "start", "--line", "nope", "--agent", "a", "--direction", "in", "--remote", "1", check=False
    )
    assert p.returncode == 1 and b"nope" in p.stderr
