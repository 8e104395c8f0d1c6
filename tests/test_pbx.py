"""PBX recordings ingest: settle + not-open detection, sidecar either order, rejects."""

from __future__ import annotations

import json
import subprocess
import time
from datetime import datetime
from pathlib import Path

from tests.support.appliance import Appliance
from tests.support.audio import PlaintextWatch, call_party, edit_config, plaintext_hits, tone_wav


def _wav_bytes(tmp: Path, seconds: float) -> bytes:
    return tone_wav(tmp / "src.wav", seconds, 523.0, rate=8000).read_bytes()


def _sidecar(**over: object) -> bytes:
    body = {
        "line": "cs-1",
        "start": "2026-11-30T10:00:00+02:00",
        "agent": "Anna Virtanen",
        "direction": "in",
        "remote": "+358 40 7654321",
        "call_id": "1700000000.42",
    }
    body.update(over)
    return json.dumps(body).encode()


def _settle(app: Appliance, seconds: str = "1") -> None:
    edit_config(app.config_path, r"^settle_seconds = 5$", f"settle_seconds = {seconds}")


def test_init_sets_pbx_dir(appliance: Appliance) -> None:
    assert appliance.cfg.pbx.dir == appliance.dir.resolve() / "pbx"
    assert appliance.cfg.pbx.dir.is_dir()


def test_slow_wav_not_taken_while_growing_then_sealed_with_3_month_deadline(
    appliance: Appliance, tmp_path: Path
) -> None:
    _settle(appliance)
    pbx = appliance.cfg.pbx.dir
    assert pbx is not None
    watch = PlaintextWatch(appliance.cfg.paths.spool, appliance.cfg.paths.store)
    daemon = appliance.popen("ingest-pbx", stderr=subprocess.PIPE)
    try:
        (pbx / "call-42.json").write_bytes(_sidecar())  # sidecar first
        data = _wav_bytes(tmp_path, 4.0)
        audio = pbx / "call-42.wav"
        with open(audio, "wb") as f:
            step = len(data) // 10
            for i in range(10):
                f.write(data[i * step : (i + 1) * step])
                f.flush()
                time.sleep(0.3)
                assert audio.exists(), "taken while still growing"
            # Stalled writer, file still open for writing, longer than settle_seconds.
            time.sleep(2.0)
            assert audio.exists(), "taken while still open for writing"
            assert not list(appliance.cfg.paths.spool.glob("*.seg"))
            f.write(data[10 * step :])
        deadline = time.monotonic() + 30
        while audio.exists():
            assert time.monotonic() < deadline, "never taken after close"
            time.sleep(0.2)
        assert not (pbx / "call-42.json").exists()
    finally:
        daemon.terminate()
        _out, err = daemon.communicate(timeout=30)
    assert b"event=pbx.sealed" in err, err.decode(errors="replace")
    appliance.cli("ingest", "--once")
    (seg,) = json.loads(appliance.cli("segments", "list", "--json", "--source", "cs-1").stdout)
    m = seg["meta"]
    assert call_party(m) == ("Anna Virtanen", "in", "+358 40 7654321", "1700000000.42", "cs-1")
    assert seg["start"] == "2026-11-30T08:00:00Z" and seg["duration"] == 4.0
    assert seg["retention_class"] == "call-audio"
    # 3 calendar months in the site's zone (Helsinki): 2026-11-30 -> 2027-02-28 (clamped).
    assert datetime.fromisoformat(seg["deadline"].replace("Z", "+00:00")).date().isoformat() == "2027-02-28"
    blob = appliance.cli("segments", "cat", seg["id"]).stdout
    assert blob == data  # sealed as-is, byte for byte
    assert watch.finish() == []


def test_malformed_sidecar_rejected_with_reason_nothing_deleted(appliance: Appliance, tmp_path: Path) -> None:
    _settle(appliance, "0.5")
    pbx = appliance.cfg.pbx.dir
    assert pbx is not None
    data = _wav_bytes(tmp_path, 3.0)
    (pbx / "bad-dir.wav").write_bytes(data)
    (pbx / "bad-dir.json").write_bytes(_sidecar(direction="sideways"))
    (pbx / "bad-json.wav").write_bytes(data)
    (pbx / "bad-json.json").write_bytes(b'{"line": "cs-1", ')
    (pbx / "no-line.wav").write_bytes(data)
    (pbx / "no-line.json").write_bytes(_sidecar(line="cs-9"))
    out = appliance.cli("ingest-pbx", "--once").stdout.decode()
    assert "rejected=3" in out, out
    rej = pbx / "rejected"
    assert "direction" in (rej / "bad-dir.reason.txt").read_text()
    assert "not valid JSON" in (rej / "bad-json.reason.txt").read_text()
    assert "cs-9" in (rej / "no-line.reason.txt").read_text()
    for stem in ("bad-dir", "bad-json", "no-line"):
        assert (rej / f"{stem}.wav").read_bytes() == data
        assert (rej / f"{stem}.json").exists()
        assert not (pbx / f"{stem}.wav").exists()
    assert not list(appliance.cfg.paths.spool.glob("*.seg"))


def test_audio_waits_for_late_sidecar_and_remote_is_hashed(appliance: Appliance, tmp_path: Path) -> None:
    _settle(appliance, "0.5")
    edit_config(appliance.config_path, r"^(min_seconds = 2\.0)$", r"\1\nhash_remote = true")
    appliance.cli("call", "hash-key", "--init")
    pbx = appliance.cfg.pbx.dir
    assert pbx is not None
    (pbx / "late.mp3").write_bytes(b"")  # placeholder replaced below with real MP3
    subprocess.run(
        [
            "ffmpeg",
            "-v",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=440:duration=3",
            "-c:a",
            "libmp3lame",
            "-b:a",
            "32k",
            str(pbx / "late.mp3"),
        ],
        check=True,
        timeout=60,
    )
    out = appliance.cli("ingest-pbx", "--once").stdout.decode()
    assert "sealed=0" in out and "waiting=1" in out and (pbx / "late.mp3").exists()
    (pbx / "late.json").write_bytes(_sidecar(call_id="late-1"))
    out = appliance.cli("ingest-pbx", "--once").stdout.decode()
    assert "sealed=1" in out, out
    assert not (pbx / "late.mp3").exists()
    assert plaintext_hits(appliance.cfg.paths.spool) == []
    appliance.cli("ingest", "--once")
    (seg,) = json.loads(appliance.cli("segments", "list", "--json").stdout)
    expected = appliance.cli("call", "hash-key", "--remote", "+358 40 765 4321").stdout.decode().strip()
    assert "remote" not in seg["meta"] and seg["meta"]["remote_hash"] == expected
    assert expected.startswith("hmac-sha256:") and seg["meta"]["mime"] == "audio/mpeg"
