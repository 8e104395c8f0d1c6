"""Invariants 2 and 3: a sealed segment detects any change and reads at any byte range."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vault.sealed import keys, seal
from vault.sealed.seal import (
    ChunkDamaged,
    ChunkMissing,
    ChunksReordered,
    EnvelopeError,
    HeaderDamaged,
    HeaderMismatch,
    KeyDestroyed,
    SegmentReader,
    SegmentWriter,
    TrailerDamaged,
    Truncated,
)

CS = 4096  # small chunks so tests cover many chunk boundaries quickly


@pytest.fixture(scope="module")
def keyset(tmp_path_factory: pytest.TempPathFactory) -> tuple[keys.Keyring, object]:
    d = tmp_path_factory.mktemp("keys")
    keys.init_keys(d)
    return keys.Keyring.load(d), keys.load_seal_public(d / keys.SEAL_PUB)


def sealed(pub: object, data: bytes, seg_id: str = "seg1", writes: list[int] | None = None) -> bytes:
    out = io.BytesIO()
    w = SegmentWriter(out, pub, {"id": seg_id, "source": "office-1", "start": "2026-11-21T08:00:00Z"}, CS)  # type: ignore[arg-type]
    pos = 0
    for n in writes or [len(data)]:
        w.write(data[pos : pos + n])
        pos += n
    w.write(data[pos:])
    w.close({"end": "2026-11-21T08:00:10Z", "duration": 10.0})
    return out.getvalue()


def layout(blob: bytes, kr: keys.Keyring) -> tuple[int, int]:
    r = SegmentReader(io.BytesIO(blob), kr)
    return r.header.header_len, r.layout.chunks


PAYLOAD = os.urandom(CS * 10 + 123)


def test_round_trip_and_metadata(keyset) -> None:
    kr, pub = keyset
    blob = sealed(pub, PAYLOAD, writes=[1, 7, CS, 3 * CS + 5])
    r = SegmentReader(io.BytesIO(blob), kr)
    assert r.read() == PAYLOAD
    assert r.plaintext_size == len(PAYLOAD)
    assert r.meta["source"] == "office-1"
    assert r.trailer == {"end": "2026-11-21T08:00:10Z", "duration": 10.0}
    assert r.trailer_authenticated and not r.cut_short
    res = r.verify()
    assert res.chunks == 11 and res.plaintext_bytes == len(PAYLOAD)


@pytest.mark.parametrize("size", [0, 1, CS - 1, CS, CS + 1, 2 * CS, 5 * CS + 17])
def test_sizes_at_chunk_boundaries(keyset, size: int) -> None:
    kr, pub = keyset
    data = os.urandom(size)
    r = SegmentReader(io.BytesIO(sealed(pub, data)), kr)
    assert r.read() == data
    assert r.verify().plaintext_bytes == size


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(offset=st.integers(0, len(PAYLOAD) + 50), length=st.integers(0, len(PAYLOAD) + 50))
def test_random_access_equals_slice(keyset, offset: int, length: int) -> None:
    kr, pub = keyset
    blob = _BLOB_CACHE.setdefault("b", sealed(pub, PAYLOAD))
    r = SegmentReader(io.BytesIO(blob), kr)
    assert r.read(offset, length) == PAYLOAD[offset : offset + length]


_BLOB_CACHE: dict[str, bytes] = {}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(splits=st.lists(st.integers(0, 3 * CS + 7), max_size=12), size=st.integers(0, 6 * CS + 9))
def test_any_write_pattern_round_trips(keyset, splits: list[int], size: int) -> None:
    kr, pub = keyset
    data = PAYLOAD[:size]
    r = SegmentReader(io.BytesIO(sealed(pub, data, writes=splits)), kr)
    assert r.read() == data
    assert r.layout.chunks == max(1, -(-size // CS))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    splits=st.lists(st.sampled_from([0, 1, CS - 1, CS, CS + 1, 2 * CS]), max_size=10),
    kind=st.sampled_from(["bytes", "bytearray", "memoryview"]),
)
def test_whole_chunk_writes_round_trip_from_any_buffer(keyset, splits: list[int], kind: str) -> None:
    """Whole-chunk writes are kept by reference only when the caller's buffer cannot change."""
    kr, pub = keyset
    data = os.urandom(sum(splits) + 3)  # up to 10 writes of 2 chunks: more than PAYLOAD holds
    out = io.BytesIO()
    w = SegmentWriter(out, pub, {"id": "seg1", "source": "office-1"}, CS)  # type: ignore[arg-type]
    scratch = bytearray(3 * CS)
    pos = 0
    for n in [*splits, 3]:
        piece = data[pos : pos + n]
        if kind == "bytearray":
            # The caller reuses its buffer after each write, as a readinto() loop does.
            scratch[:n] = piece
            w.write(memoryview(scratch)[:n])
            scratch[:n] = bytes(n)
        elif kind == "memoryview":
            w.write(memoryview(data)[pos : pos + n])
        else:
            w.write(piece)
        pos += n
    w.close({})
    assert SegmentReader(io.BytesIO(out.getvalue()), kr).read() == data


def test_one_chunk_writes_copy_nothing(keyset) -> None:
    """Writes of exactly one chunk (a recorder's pipe reads at 1 MiB chunks) are sealed with no copy."""
    import tracemalloc

    _kr, pub = keyset
    cs = 1 << 20
    chunks = [os.urandom(cs) for _ in range(8)]

    class Discard:
        def write(self, b: bytes) -> int:
            return len(b)

    w = SegmentWriter(Discard(), pub, {"id": "seg1", "source": "office-1"}, cs)  # type: ignore[arg-type]
    tracemalloc.start()
    try:
        for c in chunks:
            w.write(c)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    w.close({})
    # Each ciphertext is one chunk allocated by AES-GCM; a copy of the plaintext would double it.
    assert peak < 1.5 * cs, f"peak {peak} bytes while sealing {cs}-byte writes"


class CountingFile(io.BytesIO):
    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.bytes_read = 0

    def read(self, n: int | None = -1) -> bytes:  # type: ignore[override]
        b = super().read(n)
        self.bytes_read += len(b)
        return b

    def readinto(self, buf) -> int:  # type: ignore[no-untyped-def,override]
        n = super().readinto(buf)
        self.bytes_read += n
        return n


def test_range_read_decrypts_only_touched_chunks(keyset) -> None:
    kr, pub = keyset
    data = os.urandom(CS * 200)
    f = CountingFile(sealed(pub, data))
    r = SegmentReader(f, kr)
    before = f.bytes_read
    assert r.read(CS * 150 + 10, 100) == data[CS * 150 + 10 : CS * 150 + 110]
    assert f.bytes_read - before == CS + 16  # exactly one chunk read from the file


def _chunk_span(blob: bytes, kr: keys.Keyring, i: int) -> tuple[int, int]:
    hlen, _ = layout(blob, kr)
    step = CS + 16
    return hlen + i * step, hlen + (i + 1) * step


def test_bit_flip_in_chunk_is_chunk_damaged(keyset) -> None:
    kr, pub = keyset
    blob = bytearray(sealed(pub, PAYLOAD))
    a, _ = _chunk_span(bytes(blob), kr, 3)
    blob[a + 100] ^= 0x01
    r = SegmentReader(io.BytesIO(bytes(blob)), kr)
    assert r.read(0, CS) == PAYLOAD[:CS]  # untouched chunks still read
    with pytest.raises(ChunkDamaged) as e:
        r.verify()
    assert e.value.index == 3


def test_dropped_chunk_is_chunk_missing(keyset) -> None:
    kr, pub = keyset
    blob = sealed(pub, PAYLOAD)
    a, b = _chunk_span(blob, kr, 4)
    with pytest.raises(ChunkMissing):
        SegmentReader(io.BytesIO(blob[:a] + blob[b:]), kr).verify()


def test_dropped_chunk_with_fixed_footer_is_pinpointed(keyset) -> None:
    """Even if the attacker also rewrites the footer's count, the counter names the gap."""
    kr, pub = keyset
    blob = sealed(pub, PAYLOAD)
    a, b = _chunk_span(blob, kr, 4)
    cut = bytearray(blob[:a] + blob[b:])
    # footer: u64 count, u32 tlen, u8 status, 8-byte magic
    count = int.from_bytes(cut[-21:-13], "big")
    cut[-21:-13] = (count - 1).to_bytes(8, "big")
    with pytest.raises((ChunkMissing, TrailerDamaged)):
        SegmentReader(io.BytesIO(bytes(cut)), kr).verify()
    # the chunks alone (bypassing the authenticated trailer) still say which one is missing
    with pytest.raises(ChunkMissing) as e:
        full = SegmentReader(io.BytesIO(blob), kr)
        ct4 = blob[b : b + CS + 16]  # what now sits at position 4 is chunk 5
        full._diagnose(4, ct4)
    assert e.value.index == 4


def test_swapped_chunks_are_reordered(keyset) -> None:
    kr, pub = keyset
    blob = sealed(pub, PAYLOAD)
    a2, b2 = _chunk_span(blob, kr, 2)
    a5, b5 = _chunk_span(blob, kr, 5)
    swapped = blob[:a2] + blob[a5:b5] + blob[b2:a5] + blob[a2:b2] + blob[b5:]
    with pytest.raises(ChunksReordered) as e:
        SegmentReader(io.BytesIO(swapped), kr).verify()
    assert (e.value.index, e.value.found) == (2, 5)


def test_truncated_tail(keyset) -> None:
    kr, pub = keyset
    blob = sealed(pub, PAYLOAD)
    for cut in (1, 30, 5000):
        with pytest.raises(Truncated):
            SegmentReader(io.BytesIO(blob[:-cut]), kr).verify()


def test_truncated_at_chunk_boundary_with_forged_complete_footer(keyset) -> None:
    """Dropping the final chunk and re-adding a footer is caught by the last-chunk flag."""
    kr, pub = keyset
    blob = sealed(pub, PAYLOAD)
    r = SegmentReader(io.BytesIO(blob), kr)
    n = r.layout.chunks
    a, _ = _chunk_span(blob, kr, n - 1)
    trailer_and_footer = blob[a + r.layout.last_plain + 16 :]
    forged = bytearray(blob[:a] + trailer_and_footer)
    forged[-21:-13] = (n - 1).to_bytes(8, "big")
    with pytest.raises((Truncated, TrailerDamaged)):
        SegmentReader(io.BytesIO(bytes(forged)), kr).verify()


def test_header_from_another_segment(keyset) -> None:
    kr, pub = keyset
    a = sealed(pub, PAYLOAD, "seg-a")
    b = sealed(pub, PAYLOAD, "seg-b")
    ha, _ = layout(a, kr)
    hb, _ = layout(b, kr)
    spliced = b[:hb] + a[ha:]
    with pytest.raises(HeaderMismatch):
        SegmentReader(io.BytesIO(spliced), kr).verify()


def test_header_swap_in_stored_form_with_expected_id(keyset) -> None:
    kr, pub = keyset
    a, b = sealed(pub, PAYLOAD, "seg-a"), sealed(pub, PAYLOAD, "seg-b")
    sa, sb = io.BytesIO(), io.BytesIO()
    hdr_a, _, _ = seal.detach_envelope(io.BytesIO(a), sa)
    seal.detach_envelope(io.BytesIO(b), sb)
    ha, _ = layout(a, kr)
    hb, _ = layout(b, kr)
    spliced = sb.getvalue()[:hb] + sa.getvalue()[ha:]
    with pytest.raises(HeaderMismatch):
        SegmentReader(io.BytesIO(spliced), kr, envelope=hdr_a.envelope, expected_id="seg-a")


def test_bit_flip_in_header(keyset) -> None:
    kr, pub = keyset
    blob = bytearray(sealed(pub, PAYLOAD))
    hlen, _ = layout(bytes(blob), kr)
    meta_pos = bytes(blob).index(b'"office-1"') + 2
    blob[meta_pos] ^= 0x01  # "office-1" -> "nffice-1": still valid JSON
    with pytest.raises(HeaderDamaged):
        SegmentReader(io.BytesIO(bytes(blob)), kr)
    blob2 = bytearray(sealed(pub, PAYLOAD))
    blob2[hlen - 5] ^= 0x80  # inside the header tag
    with pytest.raises(HeaderDamaged):
        SegmentReader(io.BytesIO(bytes(blob2)), kr)


def test_envelope_damage_and_shredding(keyset) -> None:
    kr, pub = keyset
    blob = bytearray(sealed(pub, PAYLOAD))
    blob[54 + 40] ^= 0x01  # inside the wrapped key
    with pytest.raises(EnvelopeError):
        SegmentReader(io.BytesIO(bytes(blob)), kr)
    stored = io.BytesIO()
    hdr, _, _ = seal.detach_envelope(io.BytesIO(sealed(pub, PAYLOAD)), stored)
    assert SegmentReader(io.BytesIO(stored.getvalue()), kr, envelope=hdr.envelope).read() == PAYLOAD
    with pytest.raises(KeyDestroyed):
        SegmentReader(io.BytesIO(stored.getvalue()), kr, envelope=None)


def test_trailer_change_detected(keyset) -> None:
    kr, pub = keyset
    blob = sealed(pub, PAYLOAD)
    forged = blob.replace(b"08:00:10Z", b"08:09:10Z")
    assert forged != blob
    with pytest.raises(TrailerDamaged):
        SegmentReader(io.BytesIO(forged), kr)


def test_killed_writer_opens_up_to_last_complete_chunk(keyset, tmp_path: Path) -> None:
    kr, pub = keyset
    p = tmp_path / "partial"
    with open(p, "wb") as f:
        w = SegmentWriter(f, pub, {"id": "k", "source": "office-1"}, CS)  # type: ignore[arg-type]
        w.write(PAYLOAD[: CS * 6 + 100])  # 6 chunks sealed (the 7th waits for more data)
        f.flush()
        # simulate a kill mid-way through the next chunk write: half a chunk of garbage
        f.write(os.urandom(CS // 2))
    with open(p, "r+b") as f:
        kept = seal.recover_partial(f, {"end": "2026-11-21T08:00:05Z", "end_reason": "killed"})
    assert kept == 6
    with open(p, "rb") as f:
        r = SegmentReader(f, kr)
        assert r.cut_short and not r.trailer_authenticated
        assert r.read() == PAYLOAD[: CS * 6]
        assert r.trailer["end_reason"] == "killed"


def test_killed_before_first_chunk_reports_nothing_kept(keyset, tmp_path: Path) -> None:
    _, pub = keyset
    p = tmp_path / "partial"
    with open(p, "wb") as f:
        w = SegmentWriter(f, pub, {"id": "k", "source": "office-1"}, CS)  # type: ignore[arg-type]
        w.write(b"x" * 100)
    with open(p, "r+b") as f:
        assert seal.recover_partial(f, {}) == 0


def test_not_a_segment() -> None:
    with pytest.raises(HeaderDamaged):
        seal.read_header(io.BytesIO(b"\x00\x00\x00\x18ftypisom" + bytes(100)))


def test_ciphertext_carries_no_plaintext_structure(keyset) -> None:
    _, pub = keyset
    data = (b"\x00\x00\x00\x18ftypisom" + b"moov" * 1000 + b"mdat" * 1000) * 3
    blob = sealed(pub, data)
    for sig in (b"ftyp", b"moov", b"mdat"):
        assert sig not in blob
