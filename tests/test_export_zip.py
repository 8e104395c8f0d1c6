"""The evidence export's fast path: moofs patched at offsets found by a cheap scan, digests on
worker threads, zip members whose CRC-32 the build already computed.

Real segments (ffmpeg, `holdfast seal`, ingest), real zip readers (Python's zipfile, Info-ZIP's
`unzip -t`), real sha256sum; a damaged segment is a flipped byte in its stored blob.
"""

from __future__ import annotations

import hashlib
import io
import os
import struct
import subprocess
import threading
import zipfile
import zlib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.support.appliance import make_appliance
from tests.support.footage import record
from tests.support.media import FFMPEG, make_fmp4, requires_ffmpeg
from vault.exports import evidence
from vault.index.queries import exportable_segments
from vault.media import mp4
from vault.sealed import keys
from vault.sealed.seal import SealError

pytestmark = requires_ffmpeg

T0 = datetime(2026, 11, 21, 8, 0, tzinfo=UTC)


def test_moof_times_agree_with_the_full_fragment_parse(tmp_path: Path) -> None:
    seg = make_fmp4(tmp_path / "s.mp4", 3.0, 320, 240, gop=25, audio=True)
    reader = mp4.FragmentedMp4Reader()
    items = reader.feed(seg.read_bytes())
    assert reader.init is not None
    defaults = {t.track_id: t.default_sample_duration for t in reader.init.tracks.values()}
    frags = [x for x in items if isinstance(x, mp4.Fragment)]
    assert len(frags) >= 3
    for frag in frags:
        moof = mp4.Box("moof", frag.moof.data)  # offsets from the moof's first byte
        sequence_at, times = mp4.moof_times(bytearray(moof.data), defaults)
        assert _U32(moof.data, sequence_at) == frag.sequence_number
        fields = {f.track_id: f for f in mp4.decode_time_fields(moof)}
        assert {t.track_id for t in times} == set(frag.tracks) == set(fields) == {1, 2}
        for t in times:
            assert (t.offset, t.version, t.decode_time) == (
                fields[t.track_id].offset,
                fields[t.track_id].version,
                fields[t.track_id].value,
            )
            assert t.duration == frag.tracks[t.track_id].duration > 0


def test_moof_times_refuses_samples_addressed_by_absolute_offset(tmp_path: Path) -> None:
    out = tmp_path / "absolute.mp4"
    subprocess.run(
        [FFMPEG, "-nostdin", "-v", "error", "-f", "lavfi", "-i", "testsrc=size=160x120:rate=10:duration=2",
         "-c:v", "libx264", "-preset", "ultrafast", "-g", "10",
         "-movflags", "frag_keyframe+empty_moov", str(out)],
        check=True,
    )  # fmt: skip
    reader = mp4.FragmentedMp4Reader()
    frag = next(x for x in reader.feed(out.read_bytes()) if isinstance(x, mp4.Fragment))
    assert reader.init is not None
    defaults = {t.track_id: t.default_sample_duration for t in reader.init.tracks.values()}
    with pytest.raises(mp4.Mp4Error, match="absolute file offset"):
        mp4.moof_times(bytearray(frag.moof.data), defaults)


def _U32(data: bytes, at: int) -> int:
    return int(struct.unpack_from(">I", data, at)[0])


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    app = make_appliance(tmp_path_factory.mktemp("exportzip") / "site")
    record(app, "office-1", T0, 4, 2.0)
    return app


def _build(v):  # type: ignore[no-untyped-def]
    segs = _segments(v)
    assert len(segs) == 4
    return evidence.build_export(
        v, [evidence.ExportPart("office-1", segs)], {"id": 0}, {"user": "t"}, T0, T0 + timedelta(seconds=8)
    )


def test_the_joined_mp4_enters_the_zip_with_its_crc_and_size_up_front(site, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    with site.vault() as v:
        built = _build(v)
        (name,) = [n for n in built.files if n.endswith(".mp4")]
        assert set(built.crc32) == {name}  # computed while joining
        data = b"".join(built.stream())
        plain = [b"".join(v.read_plaintext(s)) for s in _segments(v)]
    zpath = tmp_path / "export.zip"
    zpath.write_bytes(data)
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        info = z.getinfo(name)
        body = z.read(name)  # zipfile checks the CRC-32 on read
        assert zlib.crc32(body) == info.CRC
    # Its local header already holds CRC and sizes: no data descriptor follows the data.
    at = info.header_offset
    signature, _version, flags, _method, _t, _d, crc = struct.unpack_from("<IHHHHHI", data, at)
    assert signature == 0x04034B50 and not flags & 0x08 and crc == info.CRC
    tested = subprocess.run(["unzip", "-tq", str(zpath)], capture_output=True, text=True)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    m = evidence.verify_export(zpath, keys.load_sign_public(site.cfg.keys.dir / keys.SIGN_PUB))
    assert m["files"][name] == hashlib.sha256(body).hexdigest()
    # Each segment's plaintext hash, computed on a worker thread, is the segment's.
    assert [s["sha256"] for s in m["cameras"][0]["segments"]] == [
        hashlib.sha256(p).hexdigest() for p in plain
    ]
    unzipped = tmp_path / "unzipped"
    subprocess.run(["unzip", "-q", str(zpath), "-d", str(unzipped)], check=True)
    sums = subprocess.run(["sha256sum", "-c", "SHA256SUMS"], cwd=unzipped, capture_output=True, text=True)
    assert sums.returncode == 0, sums.stdout + sums.stderr


def _segments(v):  # type: ignore[no-untyped-def]
    with v.sessions() as s:
        return exportable_segments(s, "office-1", T0, T0 + timedelta(seconds=8))


def test_a_damaged_segment_fails_the_export_leaving_no_thread_and_no_scratch(site) -> None:  # type: ignore[no-untyped-def]
    with site.vault() as v:
        blob = v.store.path(_segments(v)[2].storage_key)
    original = blob.read_bytes()
    os.chmod(blob, 0o600)
    damaged = bytearray(original)
    damaged[len(original) // 2] ^= 0x01  # inside a chunk: fails authentication when decrypted
    blob.write_bytes(bytes(damaged))
    threads = threading.active_count()
    scratch = evidence.export_scratch(site.cfg)
    before = set(scratch.iterdir())
    try:
        with site.vault() as v, pytest.raises(SealError):
            _build(v)
        assert threading.active_count() == threads  # the digest threads ended with the failure
        assert set(scratch.iterdir()) == before  # the export's scratch directory is gone
    finally:
        blob.write_bytes(original)
