"""Sealed segments: streaming public-key encryption with random-access reads.

The construction is the one Tink's AES-GCM-HKDF streaming AEAD and age's STREAM use: a random
per-segment key, fixed-size AES-256-GCM chunks, and a nonce of prefix || counter || last-chunk
flag. The counter makes a dropped, duplicated or reordered chunk fail authentication; the
last-chunk flag makes a truncated tail fail; binding every chunk to the header's MAC makes a
header moved from another segment fail. Because chunks are fixed-size, a byte range maps to the
chunks it touches and only those are decrypted.

The segment key is wrapped to the vault's X25519 public key in a detachable *envelope*, so a
recorder needs only the public key. At ingest the vault moves the envelope into the index; the
stored blob then holds no way to its own key, and purging the index row crypto-shreds every
copy of the blob. The byte layout is documented in docs/sealed-format.md ("Sealed segment format").

Over 500 lines because the writer, the reader and the damage diagnosis share one byte layout; they
stay together so the format is defined in one file (docs/sealed-format.md).
"""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, BinaryIO, NamedTuple

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import hmac as crypto_hmac
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from vault.errors import HoldfastError
from vault.sealed.canonical import canonical_json
from vault.sealed.keyid import key_id, raw_public

if TYPE_CHECKING:
    from vault.sealed.keys import Keyring

MAGIC = b"HOLDFAST"
VERSION = 1
FLAG_ENVELOPE = 0x01
DEFAULT_CHUNK_SIZE = 64 * 1024
MAX_CHUNK_SIZE = 16 * 1024 * 1024
MAX_META = 64 * 1024
TAG = 16

# magic, version, flags, chunk size, key id, salt
_FIXED = struct.Struct(">8sBBI8s32s")
_ENV_OFF = _FIXED.size  # 54
EPK_LEN = 32
WRAPPED_LEN = 32 + TAG
ENVELOPE_LEN = EPK_LEN + WRAPPED_LEN  # 80
_META_LEN = struct.Struct(">I")
_META_OFF = _ENV_OFF + ENVELOPE_LEN  # 134
HEADER_TAG_LEN = 32
TRAILER_TAG_LEN = 32
# chunk count, trailer JSON length, status, end magic
_FOOTER = struct.Struct(">QIB8s")
END_MAGIC = b"HFSEGEND"
STATUS_COMPLETE = 1
STATUS_CUT_SHORT = 2


# -- errors: one class per way a segment can be wrong, so callers and tests can tell them apart --


class SealError(HoldfastError):
    """A sealed segment cannot be opened as it is; never returns wrong plaintext instead."""


class HeaderDamaged(SealError):
    """The header does not authenticate or parse: changed bytes, or not a Holdfast segment."""


class HeaderMismatch(SealError):
    """The header is intact but belongs to another segment than the chunks that follow it."""


class EnvelopeError(SealError):
    """The wrapped segment key does not open with the vault's private key."""


class KeyDestroyed(SealError):
    """The segment's key is gone (crypto-shredded at purge, or not supplied)."""


class ChunkDamaged(SealError):
    def __init__(self, index: int, detail: str = "") -> None:
        self.index = index
        super().__init__(f"chunk {index} fails authentication: its bytes were changed{detail}")


class ChunkMissing(SealError):
    def __init__(self, index: int | None, detail: str = "") -> None:
        self.index = index
        where = f"chunk {index} is missing" if index is not None else "chunks are missing"
        super().__init__(f"{where}: the segment was cut or spliced{detail}")


class ChunksReordered(SealError):
    def __init__(self, index: int, found: int) -> None:
        self.index = index
        self.found = found
        super().__init__(f"chunk at position {index} is chunk {found}: chunks were reordered or swapped")


class ChunksInserted(SealError):
    """More chunk data than the footer counts: something was spliced in."""


class Truncated(SealError):
    """The tail of the segment is gone: no end marker, or the final chunk is missing."""


class TrailerDamaged(SealError):
    """The closing metadata (end time, duration) was changed after sealing."""


# -- key schedule ---------------------------------------------------------------------------


class _SubKeys(NamedTuple):
    aead: AESGCM
    prefix: bytes
    header_mac: bytes
    trailer_mac: bytes


def _derive(file_key: bytes, salt: bytes) -> _SubKeys:
    okm = HKDF(
        algorithm=hashes.SHA256(), length=32 + 7 + 32 + 32, salt=salt, info=b"holdfast-v1 segment"
    ).derive(file_key)
    return _SubKeys(AESGCM(okm[:32]), okm[32:39], okm[39:71], okm[71:103])


def _kek(shared: bytes, salt: bytes, epk: bytes, recipient: bytes) -> AESGCM:
    key = HKDF(
        algorithm=hashes.SHA256(), length=32, salt=salt, info=b"holdfast-v1 wrap" + epk + recipient
    ).derive(shared)
    return AESGCM(key)


def _mac(key: bytes, data: bytes) -> bytes:
    """HMAC-SHA256 through cryptography (hashlib would load a second OpenSSL into the recorder)."""
    h = crypto_hmac.HMAC(key, hashes.SHA256())
    h.update(data)
    return h.finalize()


def _mac_ok(key: bytes, data: bytes, tag: bytes) -> bool:
    """Constant-time check of an HMAC-SHA256 tag."""
    h = crypto_hmac.HMAC(key, hashes.SHA256())
    h.update(data)
    try:
        h.verify(tag)
    except InvalidSignature:
        return False
    return True


def _nonce(prefix: bytes, counter: int, last: bool) -> bytes:
    return prefix + counter.to_bytes(4, "big") + (b"\x01" if last else b"\x00")


def _canonical_header(fixed_and_meta: bytes) -> bytes:
    """The header as authenticated: envelope zeroed and its flag cleared, so detaching keeps it valid."""
    b = bytearray(fixed_and_meta)
    b[9] &= ~FLAG_ENVELOPE & 0xFF
    b[_ENV_OFF:_META_OFF] = bytes(ENVELOPE_LEN)
    return bytes(b)


# -- writing --------------------------------------------------------------------------------


class SealSummary(NamedTuple):
    segment_id: str
    chunks: int
    plaintext_bytes: int
    sealed_bytes: int


class SegmentWriter:
    """Seals bytes as they arrive into `sink`; holds at most one chunk of plaintext in memory.

    Needs only the vault's public key. `meta` must carry at least `id` and `source`; it is
    stored in the clear (the index needs it without a key) but authenticated.
    """

    def __init__(
        self,
        sink: BinaryIO,
        recipient: X25519PublicKey,
        meta: dict[str, Any],
        chunk_size: int = DEFAULT_CHUNK_SIZE,
    ) -> None:
        if not 1024 <= chunk_size <= MAX_CHUNK_SIZE:
            raise ValueError(f"chunk size {chunk_size} outside 1 KiB..16 MiB")
        if not isinstance(meta.get("id"), str) or not isinstance(meta.get("source"), str):
            raise ValueError("segment metadata needs string fields `id` and `source`")
        meta_bytes = canonical_json(meta)
        if len(meta_bytes) > MAX_META:
            raise ValueError(f"segment metadata is {len(meta_bytes)} bytes; at most {MAX_META}")
        self._sink = sink
        self._cs = chunk_size
        self.meta = dict(meta)
        file_key = os.urandom(32)
        salt = os.urandom(32)
        kid = key_id(recipient)
        esk = X25519PrivateKey.generate()
        epk = raw_public(esk.public_key())
        kek = _kek(esk.exchange(recipient), salt, epk, raw_public(recipient))
        wrapped = kek.encrypt(bytes(12), file_key, kid + salt)
        self._keys = _derive(file_key, salt)
        fixed = _FIXED.pack(MAGIC, VERSION, FLAG_ENVELOPE, chunk_size, kid, salt)
        body = fixed + epk + wrapped + _META_LEN.pack(len(meta_bytes)) + meta_bytes
        self._header_tag = _mac(self._keys.header_mac, _canonical_header(body))
        header = body + self._header_tag
        sink.write(header)
        self._written = len(header)
        self._buf = bytearray()
        # A full chunk still inside the caller's immutable buffer, kept by reference until it
        # is known whether more bytes follow it (then it is sealed as not-last, with no copy).
        self._held: memoryview | None = None
        self._counter = 0
        self._plain = 0
        self._closed = False

    @property
    def plaintext_bytes(self) -> int:
        held = len(self._held) if self._held is not None else 0
        return self._plain + len(self._buf) + held

    def _emit(self, data: memoryview | bytes | bytearray, last: bool) -> None:
        ct = self._keys.aead.encrypt(_nonce(self._keys.prefix, self._counter, last), data, self._header_tag)
        self._sink.write(ct)
        self._written += len(ct)
        self._plain += len(data)
        self._counter += 1

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """A chunk is sealed only once more bytes follow it, because only then is it known not to be last.

        Full chunks are encrypted straight from the caller's buffer. The tail (at most one chunk)
        is copied into the writer's own buffer, except a whole chunk of an immutable `bytes`
        buffer, which is kept by reference: writes of exactly one chunk then copy nothing.
        """
        if self._closed:
            raise ValueError("segment writer is closed")
        mv = memoryview(data).cast("B")
        if not mv:
            return
        cs = self._cs
        if self._held is not None:
            self._emit(self._held, last=False)  # more bytes follow, so it is not the last
            self._held = None
        buf = self._buf
        if buf:
            need = cs - len(buf)
            if len(mv) <= need:
                buf += mv
                return
            buf += mv[:need]
            mv = mv[need:]
            self._emit(buf, last=False)
            del buf[:]
        pos = 0
        while len(mv) - pos > cs:
            self._emit(mv[pos : pos + cs], last=False)
            pos += cs
        if len(mv) - pos == cs and isinstance(mv.obj, bytes):
            self._held = mv[pos:]
        else:
            buf += mv[pos:]

    def close(self, trailer: dict[str, Any] | None = None) -> SealSummary:
        """Seal the final chunk and the authenticated closing metadata (end time, duration)."""
        if self._closed:
            raise ValueError("segment writer is closed")
        if self._held is not None:
            self._emit(self._held, last=True)
            self._held = None
        else:
            self._emit(bytes(self._buf), last=True)
            self._buf.clear()
        tjson = canonical_json(trailer or {})
        tag = _mac(
            self._keys.trailer_mac,
            self._header_tag + _trailer_binding(self._counter, STATUS_COMPLETE) + tjson,
        )
        tail = tjson + tag + _FOOTER.pack(self._counter, len(tjson), STATUS_COMPLETE, END_MAGIC)
        self._sink.write(tail)
        self._written += len(tail)
        self._closed = True
        return SealSummary(self.meta["id"], self._counter, self._plain, self._written)


def _trailer_binding(chunks: int, status: int) -> bytes:
    return chunks.to_bytes(8, "big") + bytes([status])


# -- reading the header without a key -------------------------------------------------------


class HeaderInfo(NamedTuple):
    version: int
    flags: int
    chunk_size: int
    key_id: bytes
    salt: bytes
    envelope: bytes | None
    meta: dict[str, Any]
    header_len: int
    body: bytes  # fixed fields + envelope + meta, as on disk
    tag: bytes

    @property
    def segment_id(self) -> str:
        return str(self.meta["id"])


def _read_exact(f: BinaryIO, n: int, what: str) -> bytes:
    b = f.read(n)
    if len(b) != n:
        raise Truncated(f"{what}: file ends after {len(b)} of {n} bytes")
    return b


def read_header(f: BinaryIO) -> HeaderInfo:
    """Parse the header (no key needed): the index reads source and start from it."""
    f.seek(0)
    head = f.read(_META_OFF + _META_LEN.size)
    if len(head) < 8 or head[:8] != MAGIC:
        raise HeaderDamaged("not a Holdfast sealed segment (bad magic)")
    if len(head) < _META_OFF + _META_LEN.size:
        raise Truncated("header is cut short")
    _, version, flags, chunk_size, kid, salt = _FIXED.unpack_from(head)
    if version != VERSION:
        raise HeaderDamaged(f"unsupported segment format version {version} (this vault reads {VERSION})")
    if flags & ~FLAG_ENVELOPE:
        raise HeaderDamaged(f"unknown header flags {flags:#04x}")
    if not 1024 <= chunk_size <= MAX_CHUNK_SIZE:
        raise HeaderDamaged(f"implausible chunk size {chunk_size}")
    (meta_len,) = _META_LEN.unpack_from(head, _META_OFF)
    if meta_len > MAX_META:
        raise HeaderDamaged(f"implausible metadata length {meta_len}")
    meta_bytes = _read_exact(f, meta_len, "header metadata")
    tag = _read_exact(f, HEADER_TAG_LEN, "header tag")
    try:
        meta = json.loads(meta_bytes.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise HeaderDamaged("header metadata is not valid JSON: the header was changed") from None
    if (
        not isinstance(meta, dict)
        or not isinstance(meta.get("id"), str)
        or not isinstance(meta.get("source"), str)
    ):
        raise HeaderDamaged("header metadata lacks `id` or `source`")
    envelope = head[_ENV_OFF:_META_OFF] if flags & FLAG_ENVELOPE else None
    return HeaderInfo(
        version=version,
        flags=flags,
        chunk_size=chunk_size,
        key_id=kid,
        salt=salt,
        envelope=envelope,
        meta=meta,
        header_len=_META_OFF + _META_LEN.size + meta_len + HEADER_TAG_LEN,
        body=head + meta_bytes,
        tag=tag,
    )


class Layout(NamedTuple):
    """Where the chunks, trailer and footer are, from the file size and footer alone."""

    chunks: int
    status: int
    chunk_area: int
    trailer_json: bytes
    trailer_tag: bytes
    last_plain: int  # plaintext bytes in the final chunk

    @property
    def cut_short(self) -> bool:
        return self.status == STATUS_CUT_SHORT


def _layout(f: BinaryIO, hdr: HeaderInfo, size: int) -> Layout:
    if size < hdr.header_len + _FOOTER.size:
        raise Truncated("no end marker: the segment's tail was cut off (or it is still being written)")
    f.seek(size - _FOOTER.size)
    count, tlen, status, magic = _FOOTER.unpack(f.read(_FOOTER.size))
    if magic != END_MAGIC:
        raise Truncated("no end marker: the segment's tail was cut off (or it is still being written)")
    if status not in (STATUS_COMPLETE, STATUS_CUT_SHORT):
        raise TrailerDamaged(f"unknown segment status {status}")
    area = size - _FOOTER.size - TRAILER_TAG_LEN - tlen - hdr.header_len
    if tlen > MAX_META or area < 0:
        raise TrailerDamaged("trailer length does not fit the file")
    f.seek(hdr.header_len + area)
    tjson = f.read(tlen)
    ttag = f.read(TRAILER_TAG_LEN)
    step = hdr.chunk_size + TAG
    if count == 0:
        if area != 0:
            raise TrailerDamaged("footer says no chunks but chunk data is present")
        if status == STATUS_COMPLETE:
            raise Truncated("a complete segment has at least its final chunk")
        return Layout(0, status, 0, tjson, ttag, 0)
    lo, hi = (count - 1) * step + TAG, count * step
    if not lo <= area <= hi:
        have = -(-area // step) if area else 0
        if area < lo:
            raise ChunkMissing(None, f" (footer counts {count} chunks, the file holds {have})")
        raise ChunksInserted(
            f"the file holds more chunk data than its footer counts ({count}): chunks were inserted"
        )
    if status == STATUS_CUT_SHORT and area != hi:
        raise TrailerDamaged("a cut-short segment holds only whole chunks")
    return Layout(count, status, area, tjson, ttag, area - (count - 1) * step - TAG)


# -- reading --------------------------------------------------------------------------------


class VerifyResult(NamedTuple):
    segment_id: str
    meta: dict[str, Any]
    trailer: dict[str, Any]
    trailer_authenticated: bool
    chunks: int
    plaintext_bytes: int
    cut_short: bool
    key_id: bytes
    envelope: bytes | None = None

    def __repr__(self) -> str:  # the envelope is key material: keep it out of logs
        return (
            f"VerifyResult(segment_id={self.segment_id!r}, chunks={self.chunks}, cut_short={self.cut_short})"
        )


class SegmentReader:
    """Random-access reader: `read(offset, length)` decrypts only the chunks the range touches.

    `envelope` comes from the index for stored segments (it is detached from the blob at
    ingest); a spooled segment still carries its own. `expected_id`, when given, turns a
    header copied from another segment into `HeaderMismatch` instead of `HeaderDamaged`.
    """

    def __init__(
        self,
        f: BinaryIO,
        keyring: Keyring,
        envelope: bytes | None = None,
        expected_id: str | None = None,
    ) -> None:
        self._f = f
        f.seek(0, os.SEEK_END)
        size = f.tell()
        hdr = read_header(f)
        self.header = hdr
        if expected_id is not None and hdr.segment_id != expected_id:
            raise HeaderMismatch(
                f"header belongs to segment {hdr.segment_id}, not {expected_id}: it was moved from another segment"
            )
        env = hdr.envelope if hdr.envelope is not None else envelope
        if env is None or env == bytes(ENVELOPE_LEN):
            raise KeyDestroyed(
                f"segment {hdr.segment_id}: its key is gone (purged, crypto-shredded) or was not supplied"
            )
        if len(env) != ENVELOPE_LEN:
            raise EnvelopeError(
                f"segment {hdr.segment_id}: key envelope has {len(env)} bytes, expected {ENVELOPE_LEN}"
            )
        priv = keyring.get(hdr.key_id)
        epk, wrapped = env[:EPK_LEN], env[EPK_LEN:]
        try:
            kek = _kek(
                priv.exchange(X25519PublicKey.from_public_bytes(epk)),
                hdr.salt,
                epk,
                raw_public(priv.public_key()),
            )
            file_key = kek.decrypt(bytes(12), wrapped, hdr.key_id + hdr.salt)
        except (InvalidTag, ValueError):
            raise EnvelopeError(
                f"segment {hdr.segment_id}: the key envelope does not open (damaged, or from another segment)"
            ) from None
        self._keys = _derive(file_key, hdr.salt)
        if not _mac_ok(self._keys.header_mac, _canonical_header(hdr.body), hdr.tag):
            raise HeaderDamaged(
                f"segment {hdr.segment_id}: header fails authentication: its bytes were changed"
            )
        self._aad = hdr.tag
        self._ctbuf: bytearray | None = None
        self.layout = _layout(f, hdr, size)
        self.meta = hdr.meta
        self.trailer_authenticated = False
        self.trailer: dict[str, Any] = {}
        lay = self.layout
        if lay.trailer_json:
            try:
                t = json.loads(lay.trailer_json.decode("utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError):
                raise TrailerDamaged(
                    f"segment {hdr.segment_id}: closing metadata is not valid JSON"
                ) from None
            self.trailer = t if isinstance(t, dict) else {}
        if lay.status == STATUS_COMPLETE:
            if not _mac_ok(
                self._keys.trailer_mac,
                hdr.tag + _trailer_binding(lay.chunks, lay.status) + lay.trailer_json,
                lay.trailer_tag,
            ):
                if lay.chunks and not self._any_chunk_authenticates():
                    raise HeaderMismatch(
                        f"segment {hdr.segment_id}: no chunk authenticates under this header's key: "
                        "the header was moved from another segment"
                    )
                raise TrailerDamaged(
                    f"segment {hdr.segment_id}: closing metadata (end, duration) or chunk count was changed"
                )
            self.trailer_authenticated = True
        cs = hdr.chunk_size
        self.plaintext_size = 0 if lay.chunks == 0 else (lay.chunks - 1) * cs + lay.last_plain

    @property
    def cut_short(self) -> bool:
        return self.layout.cut_short

    def _any_chunk_authenticates(self) -> bool:
        n = self.layout.chunks
        for p in {0, n // 2, n - 1}:
            ct = self._chunk_bytes(p)
            if any(self._try(ct, p, last) is not None for last in (False, True)):
                return True
        return False

    @property
    def segment_id(self) -> str:
        return self.header.segment_id

    def _chunk_bytes(self, index: int) -> bytes:
        """A private copy of chunk `index`'s ciphertext (the diagnosis path keeps several)."""
        return bytes(self._chunk_view(index))

    def _chunk_view(self, index: int) -> memoryview:
        """Chunk `index`'s ciphertext in a buffer reused for every read: no allocation per chunk."""
        step = self.header.chunk_size + TAG
        n = self.layout.chunks
        length = step if index < n - 1 else self.layout.last_plain + TAG
        if self._ctbuf is None:
            self._ctbuf = bytearray(step)
        self._f.seek(self.header.header_len + index * step)
        view = memoryview(self._ctbuf)[:length]
        got = self._f.readinto(view)  # type: ignore[attr-defined]
        return view[: got or 0]

    def _try(self, ct: bytes | memoryview, counter: int, last: bool) -> bytes | None:
        try:
            return self._keys.aead.decrypt(_nonce(self._keys.prefix, counter, last), ct, self._aad)
        except InvalidTag:
            return None

    def chunk(self, index: int) -> bytes:
        n = self.layout.chunks
        if not 0 <= index < n:
            raise IndexError(f"chunk {index} out of range 0..{n - 1}")
        ct = self._chunk_view(index)
        is_last = index == n - 1
        if self.layout.cut_short:
            pt = self._try(ct, index, False)
            # A writer killed right after its final chunk: the data is whole, only the trailer was lost.
            if pt is None and is_last:
                pt = self._try(ct, index, True)
        else:
            pt = self._try(ct, index, is_last)
        if pt is None:
            self._diagnose(index, bytes(ct))
        return pt  # type: ignore[return-value]

    def _diagnose(self, index: int, ct: bytes) -> None:
        """Slow path, only on failure: say *how* the segment is wrong, not just that it is."""
        n = self.layout.chunks
        is_last = index == n - 1
        if self._try(ct, index, not is_last) is not None:
            if is_last:
                raise Truncated(
                    f"segment {self.segment_id}: chunk {index} is not the final chunk: the tail after it was cut off"
                )
            raise ChunkMissing(index + 1, f" (chunk {index} is marked final but chunks follow it)")
        window = range(n + 1) if n <= 4096 else range(max(0, index - 256), index + 257)
        for j in window:
            if j == index:
                continue
            for last in (False, True):
                if self._try(ct, j, last) is not None:
                    if j == index + 1:
                        raise ChunkMissing(index)
                    raise ChunksReordered(index, j)
        # Nothing matches here: a damaged chunk if its neighbours authenticate, otherwise the
        # header (and so the key) does not belong to these chunks at all.
        probes = {0, n // 2, n - 1} - {index}
        for p in probes:
            pct = self._chunk_bytes(p)
            if any(self._try(pct, p, last) is not None for last in (False, True)):
                raise ChunkDamaged(index)
        if probes:
            raise HeaderMismatch(
                f"segment {self.segment_id}: no chunk authenticates under this header's key: "
                "the header was moved from another segment"
            )
        raise ChunkDamaged(index)

    def iter_range(self, offset: int, length: int) -> Iterator[bytes]:
        """Yield the plaintext of [offset, offset+length), one chunk's worth at a time."""
        if offset < 0 or length < 0:
            raise ValueError("offset and length must not be negative")
        end = min(offset + length, self.plaintext_size)
        if offset >= end:
            return
        cs = self.header.chunk_size
        for idx in range(offset // cs, (end - 1) // cs + 1):
            pt = self.chunk(idx)
            base = idx * cs
            lo, hi = max(offset - base, 0), min(end - base, len(pt))
            yield pt if lo == 0 and hi == len(pt) else pt[lo:hi]  # whole chunks are not copied again

    def read(self, offset: int = 0, length: int | None = None) -> bytes:
        if length is None:
            length = self.plaintext_size - offset
        return b"".join(self.iter_range(offset, length))

    def verify(self) -> VerifyResult:
        """Authenticate every chunk (the whole segment), returning what the index needs."""
        total = 0
        for i in range(self.layout.chunks):
            total += len(self.chunk(i))
        return VerifyResult(
            segment_id=self.segment_id,
            meta=self.meta,
            trailer=self.trailer,
            trailer_authenticated=self.trailer_authenticated,
            chunks=self.layout.chunks,
            plaintext_bytes=total,
            cut_short=self.layout.cut_short,
            key_id=self.header.key_id,
            envelope=self.header.envelope,
        )


# -- keyless operations: recovery of killed writers, detaching the envelope -------------------


def inspect(f: BinaryIO) -> VerifyResult:
    """What the index needs, from the structure alone (no key): for a site box's ingest.

    Checks the header parses, the footer's chunk count fits the file and the closing metadata
    is JSON; it cannot authenticate anything (that needs the vault's private key), so
    `trailer_authenticated` is False and a changed byte is found on the first read, by
    `SegmentReader`, where the key is."""
    f.seek(0, os.SEEK_END)
    size = f.tell()
    hdr = read_header(f)
    lay = _layout(f, hdr, size)
    trailer: dict[str, Any] = {}
    if lay.trailer_json:
        try:
            t = json.loads(lay.trailer_json.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise TrailerDamaged(f"segment {hdr.segment_id}: closing metadata is not valid JSON") from None
        trailer = t if isinstance(t, dict) else {}
    plain = 0 if lay.chunks == 0 else (lay.chunks - 1) * hdr.chunk_size + lay.last_plain
    return VerifyResult(
        segment_id=hdr.segment_id,
        meta=hdr.meta,
        trailer=trailer,
        trailer_authenticated=False,
        chunks=lay.chunks,
        plaintext_bytes=plain,
        cut_short=lay.cut_short,
        key_id=hdr.key_id,
        envelope=hdr.envelope,
    )


def recover_partial(f: BinaryIO, trailer: dict[str, Any]) -> int:
    """Close a segment whose writer died: keep its whole chunks, mark it cut short.

    Needs no key (the recorder that restarts has only the public key). The trailer written here
    is not authenticated and readers say so; the chunks themselves still are. Returns the number
    of chunks kept; 0 means nothing complete was written and the caller should drop the file.
    """
    f.seek(0, os.SEEK_END)
    size = f.tell()
    hdr = read_header(f)
    step = hdr.chunk_size + TAG
    count = max(0, size - hdr.header_len) // step
    f.seek(hdr.header_len + count * step)
    f.truncate()
    tjson = canonical_json(trailer)
    f.write(tjson + bytes(TRAILER_TAG_LEN) + _FOOTER.pack(count, len(tjson), STATUS_CUT_SHORT, END_MAGIC))
    f.flush()
    return count


def shred_envelope(path: str | os.PathLike[str]) -> bool:
    """Overwrite a sealed file's key envelope with zeros in place (and clear its flag), fsynced.

    Why: a spool copy of a segment that was already purged must not survive anywhere with its
    envelope, or the vault's private key would still open it (crypto-shredding would have a hole).
    The header stays valid (its tag covers the envelope-less form), so the file remains a
    diagnosable, keyless sealed segment. Returns False if it carried no envelope.
    On copy-on-write filesystems and SSDs the old bytes may survive physically; the spool should
    live on a plain filesystem (ext4/xfs), as the design assumes for key destruction too.
    """
    with open(path, "r+b") as f:
        hdr = read_header(f)
        if hdr.envelope is None:
            return False
        f.seek(9)
        f.write(bytes([hdr.flags & ~FLAG_ENVELOPE & 0xFF]))
        f.seek(_ENV_OFF)
        f.write(bytes(ENVELOPE_LEN))
        f.flush()
        os.fsync(f.fileno())
    return True


def detach_envelope(src: BinaryIO, dst: BinaryIO, bufsize: int = 1024 * 1024) -> tuple[HeaderInfo, str, int]:
    """Copy a spooled segment into its stored form with the key envelope removed.

    Returns the header (whose `envelope` the index keeps), the SHA-256 of the stored bytes and
    their length. The header's authentication tag covers the envelope-less form, so the stored
    blob stays valid.
    """
    hdr = read_header(src)
    if hdr.envelope is None:
        raise HeaderDamaged(f"segment {hdr.segment_id} carries no key envelope (already stored form?)")
    stored_head = _canonical_header(hdr.body) + hdr.tag
    h = hashes.Hash(hashes.SHA256())
    h.update(stored_head)
    dst.write(stored_head)
    n = len(stored_head)
    src.seek(hdr.header_len)
    while True:
        b = src.read(bufsize)
        if not b:
            break
        h.update(b)
        dst.write(b)
        n += len(b)
    return hdr, h.finalize().hex(), n
