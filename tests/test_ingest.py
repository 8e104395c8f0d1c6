"""Spool ingest: verify, index with deadline, store; duplicates once; bad files set aside."""

from __future__ import annotations

import hashlib
import json
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.support.appliance import Appliance
from tests.support.media import make_fmp4
from tests.support.scan import plaintext_media_files
from vault.index.schema import Segment
from vault.sealed.seal import SealError
from vault.store.spool import SpoolSegment, write_gap


def _segments(app: Appliance, *args: str) -> list[dict]:
    return json.loads(app.cli("segments", "list", "--json", *args).stdout)


def test_fmp4_sealed_ingested_listed_and_read_back(
    any_appliance: Appliance, tmp_path: Path, ffmpeg: str
) -> None:
    appliance = any_appliance
    src = make_fmp4(tmp_path / "clip.mp4", 30, width=640, height=360)
    original = src.read_bytes()
    appliance.cli("seal", "--source", "office-1", "--start", "2026-11-21T08:00:00Z", str(src))
    spool = appliance.dir / "spool"
    store = appliance.dir / "store"
    assert plaintext_media_files(spool, store) == []
    out = appliance.cli("ingest", "--once").stdout.decode()
    assert "indexed=1" in out
    segs = _segments(appliance, "--source", "office-1")
    assert len(segs) == 1
    s = segs[0]
    assert s["source"] == "office-1" and s["kind"] == "video"
    assert s["start"] == "2026-11-21T08:00:00Z"
    assert s["end"] == "2026-11-21T08:00:30Z"  # ffprobe's duration of the 30 s clip
    assert s["deadline"] == "2026-12-05T08:00:30Z"  # office-camera: 14 days after the end
    assert s["meta"]["video_codec"] == "h264"
    data = appliance.cli("segments", "cat", s["id"]).stdout
    assert hashlib.sha256(data).hexdigest() == hashlib.sha256(original).hexdigest()
    probe = subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries", "stream=codec_name,width", "-of", "json", "-i", "pipe:0"],
        input=data,
        capture_output=True,
        check=True,
    )
    assert json.loads(probe.stdout)["streams"][0]["codec_name"] == "h264"
    # nothing left in the spool, nothing plaintext in the store
    assert list(spool.glob("*.seg")) == []
    assert plaintext_media_files(spool, store) == []
    shown = json.loads(appliance.cli("segments", "show", s["id"]).stdout)
    with appliance.vault() as v, v.store.open(shown["storage_key"], shown["storage_version"]) as blob:
        assert shown["sha256"] == hashlib.sha256(blob.read()).hexdigest()
    assert shown["key_present"] is True


def test_time_range_queries(any_appliance: Appliance) -> None:
    appliance = any_appliance
    with appliance.vault() as v:
        for h in range(5):
            seg = SpoolSegment(
                v.cfg.paths.spool,
                v.seal_public,
                {"source": "garage-1", "kind": "video", "start": f"2026-11-21T0{h}:00:00Z"},
            )
            seg.write(b"x" * 1000)
            seg.close({"end": f"2026-11-21T0{h}:00:10Z", "duration": 10})
    appliance.cli("ingest", "--once")
    got = _segments(
        appliance, "--source", "garage-1", "--from", "2026-11-21T01:00:05Z", "--to", "2026-11-21T03:00:00Z"
    )
    assert [g["start"] for g in got] == ["2026-11-21T01:00:00Z", "2026-11-21T02:00:00Z"]
    assert _segments(appliance, "--source", "office-1") == []
    r = appliance.cli("segments", "list", "--from", "yesterday", check=False)
    assert r.returncode != 0 and b"ISO 8601" in r.stderr


def test_same_file_twice_is_indexed_once(any_appliance: Appliance) -> None:
    appliance = any_appliance
    with appliance.vault() as v:
        seg = SpoolSegment(
            v.cfg.paths.spool, v.seal_public, {"source": "office-1", "start": "2026-11-21T08:00:00Z"}
        )
        seg.write(b"y" * 5000)
        path, _ = seg.close({"end": "2026-11-21T08:00:10Z"})
    copy = path.read_bytes()
    appliance.cli("ingest", "--once")
    path.write_bytes(copy)  # delivered again (e.g. a recorder retried its rename after a crash)
    out = appliance.cli("ingest", "--once").stdout.decode()
    assert "duplicates=1" in out
    with appliance.vault() as v, v.sessions() as s:
        assert s.query(Segment).count() == 1
    assert not path.exists()


def test_bad_files_are_rejected_with_reason_and_kept(appliance: Appliance) -> None:
    spool = appliance.dir / "spool"
    (spool / "garbage.seg").write_bytes(b"not a segment at all" * 10)
    with appliance.vault() as v:
        seg = SpoolSegment(
            v.cfg.paths.spool, v.seal_public, {"source": "nosuchcam", "start": "2026-11-21T08:00:00Z"}
        )
        seg.write(b"z" * 100)
        seg.close({})
        good = SpoolSegment(
            v.cfg.paths.spool, v.seal_public, {"source": "office-1", "start": "2026-11-21T08:00:00Z"}
        )
        good.write(b"z" * 100000)
        gpath, _ = good.close({"end": "2026-11-21T08:00:10Z"})
    blob = bytearray(gpath.read_bytes())
    blob[len(blob) // 2] ^= 0x04  # one flipped bit in a chunk
    gpath.write_bytes(bytes(blob))
    out = appliance.cli("ingest", "--once").stdout.decode()
    assert "rejected=3" in out
    rej = spool / "rejected"
    reasons = {p.name: p.read_text() for p in rej.glob("*.reason.txt")}
    assert len(reasons) == 3
    text = "\n".join(reasons.values())
    assert "HeaderDamaged" in text and "not in the configuration" in text and "ChunkDamaged" in text
    assert (rej / "garbage.seg").read_bytes() == b"not a segment at all" * 10  # nothing deleted


def test_gap_files_are_indexed(appliance: Appliance) -> None:
    write_gap(
        appliance.dir / "spool",
        "office-1",
        datetime(2026, 11, 21, 8, tzinfo=UTC),
        datetime(2026, 11, 21, 8, 0, 20, tzinfo=UTC),
        "camera unreachable",
    )
    assert "gaps=1" in appliance.cli("ingest", "--once").stdout.decode()
    from vault.index.schema import Gap

    with appliance.vault() as v, v.sessions() as s:
        (gap,) = s.query(Gap).all()
        assert gap.reason == "camera unreachable" and (gap.end - gap.start).total_seconds() == 20


def test_read_plaintext_serves_a_range_and_refuses_another_rows_blob(appliance: Appliance) -> None:
    """Vault.read_plaintext opens a row's blob with that row's envelope and id: a range reads back
    exactly, and a row pointed at another segment's blob is refused, not decrypted."""
    payloads = {h: bytes([65 + h]) * 3000 + bytes(range(256)) * 40 for h in range(2)}
    with appliance.vault() as v:
        for h, data in payloads.items():
            seg = SpoolSegment(
                v.cfg.paths.spool,
                v.seal_public,
                {"source": "garage-1", "kind": "video", "start": f"2026-11-21T0{h}:00:00Z"},
            )
            seg.write(data)
            seg.close({"end": f"2026-11-21T0{h}:00:10Z", "duration": 10})
    appliance.cli("ingest", "--once")
    with appliance.vault() as v, v.sessions() as s:
        a, b = sorted(s.query(Segment).all(), key=lambda x: x.start)
        assert b"".join(v.read_plaintext(a)) == payloads[0]
        assert b"".join(v.read_plaintext(b, 2990, 20)) == payloads[1][2990:3010]
        with v.open_plaintext(a) as p:
            assert p.size == len(payloads[0]) and p.read(100, 4) == payloads[0][100:104]
        s.expunge(a)
        a.storage_key, a.storage_version = b.storage_key, b.storage_version
        with pytest.raises(SealError):
            b"".join(v.read_plaintext(a))
