"""Append-only, tamper-evident logs (purge log, access log) for Holdfast.

Invariant 7: an auditor verifies the logs offline with the public key alone, and a changed,
dropped or reordered entry is pinpointed. Three commitments make that possible:

* every entry is canonical JSON carrying ``seq`` (its 0-based index) and ``prev`` (hex leaf hash
  of the previous entry), built by make_entry; ``seq`` exposes removal, insertion and
  reordering, ``prev`` makes each entry vouch for its predecessor's exact bytes;
* the entries are the leaves of an RFC 6962 Merkle tree (vault.ledger.merkle);
* the appliance periodically signs a checkpoint (origin, size, root, time) with Ed25519.

The hash chain alone can be recomputed by anyone with write access; the signed roots cannot
without the key. verify_log combines both: signed roots say *whether* and *from where on*
entries differ, ``seq`` and ``prev`` say *which* entry and *how*.

This module makes entries and checkpoints and reads and writes export directories;
vault.ledger.verify verifies a log and pinpoints tampering, vault.ledger.streamverify verifies an export
directory in one streaming pass. Storage-agnostic on purpose: no database imports; the caller
stores bytes and leaf hashes.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from vault.ledger import note
from vault.ledger.merkle import (
    EMPTY_ROOT,
    HASH_SIZE,
    ConsistencyProofError,
    InclusionProofError,
    MerkleAccumulator,
    MerkleError,
    MerkleLevels,
    MerkleRangeError,
    ProofError,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    node_hash,
    root,
    verify_consistency,
    verify_inclusion,
)
from vault.sealed.canonical import EntryFormatError, TlogError, canonical_json
from vault.sealed.keyid import key_id
from vault.store.fsutil import atomic_write_bytes

__all__ = [
    "CHECKPOINTS_FILE",
    "EMPTY_ROOT",
    "ENTRIES_FILE",
    "GENESIS_PREV",
    "Checkpoint",
    "CheckpointError",
    "CheckpointFormatError",
    "CheckpointSignatureError",
    "ConsistencyProofError",
    "EntryFormatError",
    "ExportFormatError",
    "InclusionProofError",
    "MerkleAccumulator",
    "MerkleError",
    "MerkleRangeError",
    "ProofError",
    "TlogError",
    "canonical_json",
    "checkpoint_lines",
    "checkpoint_body",
    "consistency_proof",
    "inclusion_proof",
    "leaf_hash",
    "load_public_key",
    "make_entry",
    "node_hash",
    "parse_entry",
    "read_checkpoints",
    "read_export",
    "root",
    "sign_checkpoint",
    "verify_checkpoint",
    "verify_consistency",
    "verify_inclusion",
    "write_export",
]

ENTRIES_FILE = "entries.jsonl"
CHECKPOINTS_FILE = "checkpoints.jsonl"
#: The latest checkpoint as a C2SP signed note (what an auditor keeps for `verify --since`).
NOTE_FILE = "checkpoint"
#: One RFC 9162 consistency proof per earlier signed checkpoint size, to the latest checkpoint.
CONSISTENCY_FILE = "consistency.jsonl"
#: Export files are for handing to an auditor: readable by anyone the directory lets in.
EXPORT_MODE = 0o644

GENESIS_PREV = "00" * HASH_SIZE
"""``prev`` of entry 0: there is no previous entry, so it commits to 32 zero bytes."""

_GENESIS = bytes(HASH_SIZE)
_RESERVED = ("seq", "prev")


class CheckpointError(TlogError):
    """Base class for checkpoint problems."""


class CheckpointFormatError(CheckpointError, ValueError):
    """A checkpoint field is malformed (cannot even be checked)."""


class CheckpointSignatureError(CheckpointError):
    """A checkpoint is not signed by the given key: altered, or signed by another key."""


class ExportFormatError(TlogError):
    """An export directory is missing a file or has a line that cannot be read."""


# --------------------------------------------------------------------------- entries


def make_entry(seq: int, prev_leaf_hash: bytes | None, payload: Mapping[str, Any]) -> bytes:
    """Build the canonical bytes of log entry ``seq``; pass None as prev for entry 0.

    ``prev_leaf_hash`` is leaf_hash() of the previous entry's bytes, so a later change to that
    entry is visible at this one. ``payload`` must not use the reserved keys ``seq``/``prev``.
    """
    if not isinstance(seq, int) or isinstance(seq, bool) or seq < 0:
        raise EntryFormatError(f"seq must be a non-negative integer, got {seq!r}")
    if prev_leaf_hash is None:
        if seq != 0:
            raise EntryFormatError(f"entry {seq} needs the leaf hash of entry {seq - 1} as prev")
        prev_leaf_hash = _GENESIS
    if not isinstance(prev_leaf_hash, bytes) or len(prev_leaf_hash) != HASH_SIZE:
        raise EntryFormatError(f"prev must be a {HASH_SIZE}-byte leaf hash, got {prev_leaf_hash!r}")
    if seq == 0 and prev_leaf_hash != _GENESIS:
        raise EntryFormatError("entry 0 has no predecessor: pass prev_leaf_hash=None")
    if not isinstance(payload, Mapping):
        raise EntryFormatError(f"payload must be a mapping, got {type(payload).__name__}")
    clash = [k for k in _RESERVED if k in payload]
    if clash:
        raise EntryFormatError(f"payload uses reserved key(s) {clash}: rename them")
    return canonical_json({**payload, "seq": seq, "prev": prev_leaf_hash.hex()})


def parse_entry(data: bytes) -> dict[str, Any]:
    """Decode an entry and check its ``seq`` and ``prev`` fields are well-formed."""
    try:
        obj = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise EntryFormatError(f"not UTF-8 JSON: {exc}") from exc
    if not isinstance(obj, dict):
        raise EntryFormatError("not a JSON object")
    seq = obj.get("seq")
    if not isinstance(seq, int) or isinstance(seq, bool) or seq < 0:
        raise EntryFormatError(f"'seq' is missing or not a non-negative integer: {seq!r:.40}")
    prev = obj.get("prev")
    if not isinstance(prev, str) or len(prev) != 2 * HASH_SIZE or not _is_lower_hex(prev):
        raise EntryFormatError(f"'prev' is missing or not 64 lowercase hex digits: {prev!r:.80}")
    return obj


_LOWER_HEX = re.compile(r"[0-9a-f]*")


def _is_lower_hex(s: str) -> bool:
    return _LOWER_HEX.fullmatch(s) is not None


# --------------------------------------------------------------------------- checkpoints


def load_public_key(data: bytes) -> Ed25519PublicKey:
    """Read an Ed25519 public key from PEM, DER or 32 raw bytes (for `--pubkey FILE`)."""
    try:
        if len(data) == 32:
            return Ed25519PublicKey.from_public_bytes(data)
        if data.lstrip().startswith(b"-----BEGIN"):
            key = serialization.load_pem_public_key(data)
        else:
            key = serialization.load_der_public_key(data)
    except ValueError as exc:
        raise CheckpointFormatError(f"cannot read the public key: {exc}") from exc
    if not isinstance(key, Ed25519PublicKey):
        raise CheckpointFormatError(
            f"the public key is {type(key).__name__}, but log checkpoints use Ed25519"
        )
    return key


def _parse_utc(time: str) -> datetime:
    if not isinstance(time, str) or "\n" in time:
        raise CheckpointFormatError(f"time must be an ISO 8601 UTC string, got {time!r}")
    try:
        parsed = datetime.fromisoformat(time)
    except ValueError as exc:
        raise CheckpointFormatError(f"time {time!r} is not ISO 8601: {exc}") from exc
    if parsed.tzinfo is None or parsed.utcoffset() != UTC.utcoffset(None):
        raise CheckpointFormatError(f"time {time!r} must be in UTC (end it with Z or +00:00)")
    return parsed


def _check_fields(origin: str, size: int, root_hash: bytes, time: str) -> None:
    if not isinstance(origin, str) or not origin or "\n" in origin:
        raise CheckpointFormatError(f"origin must be a non-empty single line, got {origin!r}")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise CheckpointFormatError(f"size must be a non-negative integer, got {size!r}")
    if not isinstance(root_hash, bytes) or len(root_hash) != HASH_SIZE:
        raise CheckpointFormatError(f"root must be {HASH_SIZE} bytes, got {root_hash!r:.80}")
    _parse_utc(time)


def checkpoint_body(origin: str, size: int, root_hash: bytes, time: str) -> bytes:
    """The exact bytes signed (C2SP signed-note style): origin, size, base64 root, time."""
    _check_fields(origin, size, root_hash, time)
    b64 = base64.b64encode(root_hash).decode("ascii")
    return f"{origin}\n{size}\n{b64}\n{time}\n".encode()


@dataclass(frozen=True)
class Checkpoint:
    """A signed statement: the log named ``origin`` had ``size`` entries with this root."""

    origin: str
    size: int
    root: bytes
    time: str
    key_id: str
    signature: bytes

    def body(self) -> bytes:
        """The signed message."""
        return checkpoint_body(self.origin, self.size, self.root, self.time)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form; bytes are standard base64."""
        return {
            "origin": self.origin,
            "size": self.size,
            "root": base64.b64encode(self.root).decode("ascii"),
            "time": self.time,
            "key_id": self.key_id,
            "signature": base64.b64encode(self.signature).decode("ascii"),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Checkpoint:
        """Inverse of to_dict; raises CheckpointFormatError naming the bad field."""
        if not isinstance(data, Mapping):
            raise CheckpointFormatError("a checkpoint must be a JSON object")
        expected = {"origin", "size", "root", "time", "key_id", "signature"}
        missing, extra = expected - data.keys(), data.keys() - expected
        if missing or extra:
            raise CheckpointFormatError(
                f"checkpoint fields wrong: missing {sorted(missing)}, unexpected {sorted(extra)}"
            )
        for name in ("origin", "time", "key_id", "root", "signature"):
            if not isinstance(data[name], str):
                raise CheckpointFormatError(f"checkpoint field {name!r} must be a string")
        size = data["size"]
        if not isinstance(size, int) or isinstance(size, bool):
            raise CheckpointFormatError(f"checkpoint field 'size' must be an integer, got {size!r}")
        decoded: dict[str, bytes] = {}
        for name in ("root", "signature"):
            try:
                decoded[name] = base64.b64decode(data[name], validate=True)
            except (binascii.Error, ValueError) as exc:
                raise CheckpointFormatError(f"checkpoint field {name!r} is not base64") from exc
        return cls(
            origin=data["origin"],
            size=size,
            root=decoded["root"],
            time=data["time"],
            key_id=data["key_id"],
            signature=decoded["signature"],
        )


def _format_time(time: str | datetime) -> str:
    if isinstance(time, datetime):
        if time.tzinfo is None:
            raise CheckpointFormatError("checkpoint time must be timezone-aware (UTC)")
        return time.astimezone(UTC).isoformat().replace("+00:00", "Z")
    _parse_utc(time)
    return time


def sign_checkpoint(
    private_key: Ed25519PrivateKey,
    origin: str,
    size: int,
    root: bytes,
    time: str | datetime,
) -> Checkpoint:
    """Sign (origin, size, root, time); a datetime is rendered as ISO 8601 with Z."""
    time_str = _format_time(time)
    body = checkpoint_body(origin, size, root, time_str)
    return Checkpoint(
        origin=origin,
        size=size,
        root=bytes(root),
        time=time_str,
        key_id=key_id(private_key.public_key()).hex(),
        signature=private_key.sign(body),
    )


def verify_checkpoint(cp: Checkpoint, public_key: Ed25519PublicKey | Sequence[Ed25519PublicKey]) -> None:
    """Raise CheckpointFormatError or CheckpointSignatureError unless ``public_key`` signed cp.

    A sequence of keys is the chain of a rotated log signing key (vault/sealed/keyrotation.py,
    ``trusted_sign_keys``): the checkpoint must be signed by the key its key_id names among them.
    """
    if not isinstance(public_key, Ed25519PublicKey):
        chain = list(public_key)
        public_key = next((k for k in chain if key_id(k).hex() == cp.key_id), chain[-1])
    body = cp.body()
    if not isinstance(cp.signature, bytes):
        raise CheckpointFormatError("signature must be bytes")
    expected_id = key_id(public_key).hex()
    if cp.key_id != expected_id:
        raise CheckpointSignatureError(
            f"checkpoint names key {cp.key_id!r} but the verifying key is {expected_id!r}: "
            "use the public key of the appliance that wrote this log, or the key_id was altered"
        )
    try:
        public_key.verify(cp.signature, body)
    except InvalidSignature:
        raise CheckpointSignatureError(
            f"signature does not match the checkpoint (size {cp.size}, time {cp.time}): "
            "its origin, size, root, time or signature was altered after signing"
        ) from None


# --------------------------------------------------------------------------- signed notes


def checkpoint_note(cp: Checkpoint, public_key: Ed25519PublicKey) -> bytes:
    """The checkpoint as a C2SP signed note (c2sp.org/tlog-checkpoint), with cp's own signature.

    The note text is exactly the signed body: origin, size, base64 root, then the time as the
    one extension line. Ed25519 note signatures are over the note text, so the signature made
    at checkpoint time is the note's signature; the key name is the origin (the spec's
    recommendation), the key ID SHA-256(origin || 0x0A || 0x01 || public key)[:4].
    """
    if cp.key_id != key_id(public_key).hex():
        raise CheckpointSignatureError(
            f"checkpoint is signed by key {cp.key_id}, not by {key_id(public_key).hex()}: pass its own key"
        )
    return note.assemble(cp.body(), [note.signature_line(cp.origin, public_key, cp.signature)])


def verifier_key(origin: str, public_key: Ed25519PublicKey) -> str:
    """The verifier key line for a log's checkpoint notes (Go: note.NewVerifier)."""
    return note.verifier_key(origin, public_key)


def parse_checkpoint_note(
    data: bytes, public_key: Ed25519PublicKey | Sequence[Ed25519PublicKey]
) -> Checkpoint:
    """Open a checkpoint note signed by one of the trusted keys; CheckpointError otherwise."""
    keys = [public_key] if isinstance(public_key, Ed25519PublicKey) else list(public_key)
    try:
        text, sigs = note.parse(data)
        origin = text.decode("utf-8").split("\n", 1)[0]
        verifiers = [note.verifier(origin, k) for k in keys]
        _, v = note.open_note(data, verifiers)
    except note.NoteError as e:
        raise CheckpointSignatureError(f"checkpoint note: {e}") from None
    lines = text.decode("utf-8").split("\n")[:-1]
    if len(lines) != 4:
        raise CheckpointFormatError(
            f"checkpoint note has {len(lines)} lines; Holdfast's have origin, size, root and time"
        )
    _, size_s, root_b64, time = lines
    if not re.fullmatch(r"0|[1-9][0-9]*", size_s):
        raise CheckpointFormatError(f"checkpoint note size {size_s!r} is not a decimal number")
    try:
        root_hash = base64.b64decode(root_b64, validate=True)
    except (binascii.Error, ValueError):
        raise CheckpointFormatError("checkpoint note root is not base64") from None
    sig = next(s for s in sigs if s.name == v.name and s.key_id == v.key_id)
    cp = Checkpoint(origin, int(size_s), root_hash, time, key_id(v.public_key).hex(), sig.signature)
    if cp.body() != text:
        raise CheckpointFormatError("checkpoint note text is not in canonical form")
    return cp


# --------------------------------------------------------------------------- export


def write_export(
    directory: str | os.PathLike[str],
    entries: Sequence[bytes],
    checkpoints: Sequence[Checkpoint],
) -> None:
    """Write DIR/entries.jsonl (the exact hashed bytes, one per line) and DIR/checkpoints.jsonl."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    for i, e in enumerate(entries):
        if not isinstance(e, bytes) or b"\n" in e:
            raise ExportFormatError(
                f"entry {i} is not single-line bytes; entries must be canonical JSON "
                "(see make_entry), which never contains a raw newline"
            )
    atomic_write_bytes(d / ENTRIES_FILE, b"".join(e + b"\n" for e in entries), EXPORT_MODE)
    atomic_write_bytes(d / CHECKPOINTS_FILE, checkpoint_lines(checkpoints), EXPORT_MODE)


def checkpoint_lines(checkpoints: Sequence[Checkpoint]) -> bytes:
    """checkpoints.jsonl: one canonical JSON checkpoint per line."""
    return b"".join(canonical_json(cp.to_dict()) + b"\n" for cp in checkpoints)


def consistency_lines(levels: MerkleLevels, old_sizes: Sequence[int], new_size: int) -> bytes:
    """consistency.jsonl: a proof from each earlier checkpoint size to new_size (base64 hashes)."""
    out = []
    for m in sorted({s for s in old_sizes if 0 < s < new_size}):
        proof = levels.consistency_proof(m, new_size)
        rec = {"old_size": m, "new_size": new_size, "proof": [base64.b64encode(h).decode() for h in proof]}
        out.append(canonical_json(rec) + b"\n")
    return b"".join(out)


def read_export(directory: str | os.PathLike[str]) -> tuple[list[bytes], list[Checkpoint]]:
    """Read an export written by write_export; entries come back as the exact bytes hashed."""
    d = Path(directory)
    checkpoints = read_checkpoints(d)
    entries = _export_file(d, ENTRIES_FILE).split(b"\n")
    if entries[-1] == b"":
        entries.pop()
    return entries, checkpoints


def _export_file(d: Path, name: str) -> bytes:
    """One of the two files an export cannot do without."""
    try:
        return (d / name).read_bytes()
    except FileNotFoundError as exc:
        raise ExportFormatError(
            f"{exc.filename} is missing: an export needs both {ENTRIES_FILE} and {CHECKPOINTS_FILE}"
        ) from exc


def read_checkpoints(d: Path) -> list[Checkpoint]:
    """DIR/checkpoints.jsonl of an export, without reading its entries."""
    raw_cps = _export_file(d, CHECKPOINTS_FILE)
    checkpoints: list[Checkpoint] = []
    for lineno, line in enumerate(raw_cps.split(b"\n"), start=1):
        if not line.strip():
            continue
        try:
            checkpoints.append(Checkpoint.from_dict(json.loads(line.decode("utf-8"))))
        except (UnicodeDecodeError, ValueError, CheckpointFormatError) as exc:
            raise ExportFormatError(
                f"{d / CHECKPOINTS_FILE} line {lineno} is not a valid checkpoint: {exc}"
            ) from exc
    return checkpoints
