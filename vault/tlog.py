"""Append-only, tamper-evident logs (purge log, access log) for Holdfast.

Invariant 7: an auditor verifies the logs offline with the public key alone, and a changed,
dropped or reordered entry is pinpointed. Three commitments make that possible:

* every entry is canonical JSON carrying ``seq`` (its 0-based index) and ``prev`` (hex leaf hash
  of the previous entry), built by make_entry; ``seq`` exposes removal, insertion and
  reordering, ``prev`` makes each entry vouch for its predecessor's exact bytes;
* the entries are the leaves of an RFC 6962 Merkle tree (vault.merkle);
* the appliance periodically signs a checkpoint (origin, size, root, time) with Ed25519.

The hash chain alone can be recomputed by anyone with write access; the signed roots cannot
without the key. verify_log combines both: signed roots say *whether* and *from where on*
entries differ, ``seq`` and ``prev`` say *which* entry and *how*.

Storage-agnostic on purpose: no database imports; the caller stores bytes and leaf hashes.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import re
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from orjson import loads as _fast_loads

from vault import note
from vault.merkle import (
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
    frontier_from_consistency,
    inclusion_proof,
    leaf_hash,
    node_hash,
    root,
    verify_consistency,
    verify_inclusion,
)

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
    "Problem",
    "ProofError",
    "TlogError",
    "VerifyReport",
    "canonical_json",
    "checkpoint_body",
    "consistency_proof",
    "inclusion_proof",
    "key_id",
    "leaf_hash",
    "load_public_key",
    "make_entry",
    "node_hash",
    "parse_entry",
    "read_export",
    "root",
    "sign_checkpoint",
    "verify_checkpoint",
    "verify_consistency",
    "verify_inclusion",
    "verify_log",
    "write_export",
]

ENTRIES_FILE = "entries.jsonl"
CHECKPOINTS_FILE = "checkpoints.jsonl"
#: The latest checkpoint as a C2SP signed note (what an auditor keeps for `verify --since`).
NOTE_FILE = "checkpoint"
#: One RFC 9162 consistency proof per earlier signed checkpoint size, to the latest checkpoint.
CONSISTENCY_FILE = "consistency.jsonl"

GENESIS_PREV = "00" * HASH_SIZE
"""``prev`` of entry 0: there is no previous entry, so it commits to 32 zero bytes."""

_GENESIS = bytes(HASH_SIZE)
_RESERVED = ("seq", "prev")


class TlogError(Exception):
    """Base class for tamper-evident log errors."""


class EntryFormatError(TlogError, ValueError):
    """An entry is not canonical JSON with integer ``seq`` and hex ``prev``."""


class CheckpointError(TlogError):
    """Base class for checkpoint problems."""


class CheckpointFormatError(CheckpointError, ValueError):
    """A checkpoint field is malformed (cannot even be checked)."""


class CheckpointSignatureError(CheckpointError):
    """A checkpoint is not signed by the given key: altered, or signed by another key."""


class ExportFormatError(TlogError):
    """An export directory is missing a file or has a line that cannot be read."""


# --------------------------------------------------------------------------- entries


def canonical_json(obj: Any) -> bytes:
    """One byte string per value (sorted keys, no whitespace, UTF-8), so hashes are reproducible."""
    try:
        text = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise EntryFormatError(f"value cannot be encoded as canonical JSON: {exc}") from exc
    return text.encode("utf-8")


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


def key_id(public_key: Ed25519PublicKey) -> str:
    """First 8 bytes (hex) of SHA-256 of the raw public key: names the key without trusting it."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).digest()[:8].hex()


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
        key_id=key_id(private_key.public_key()),
        signature=private_key.sign(body),
    )


def verify_checkpoint(cp: Checkpoint, public_key: Ed25519PublicKey | Sequence[Ed25519PublicKey]) -> None:
    """Raise CheckpointFormatError or CheckpointSignatureError unless ``public_key`` signed cp.

    A sequence of keys is the chain of a rotated log signing key (vault/keyrotation.py,
    ``trusted_sign_keys``): the checkpoint must be signed by the key its key_id names among them.
    """
    if not isinstance(public_key, Ed25519PublicKey):
        chain = list(public_key)
        public_key = next((k for k in chain if key_id(k) == cp.key_id), chain[-1])
    body = cp.body()
    if not isinstance(cp.signature, bytes):
        raise CheckpointFormatError("signature must be bytes")
    expected_id = key_id(public_key)
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
    if cp.key_id != key_id(public_key):
        raise CheckpointSignatureError(
            f"checkpoint is signed by key {cp.key_id}, not by {key_id(public_key)}: pass its own key"
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
    cp = Checkpoint(origin, int(size_s), root_hash, time, key_id(v.public_key), sig.signature)
    if cp.body() != text:
        raise CheckpointFormatError("checkpoint note text is not in canonical form")
    return cp


# --------------------------------------------------------------------------- verification


class Problem(NamedTuple):
    """One finding of verify_log: what, where (entry and/or checkpoint index), what to do."""

    kind: str
    entry_index: int | None
    checkpoint_index: int | None
    message: str


@dataclass(frozen=True)
class VerifyReport:
    """Outcome of verify_log. ``ok`` is False iff ``problems`` is non-empty."""

    ok: bool
    entry_count: int
    checkpoint_count: int
    verified_size: int
    """Entries 0..verified_size-1 match a validly signed checkpoint byte for byte."""
    unsealed_from: int | None
    """First entry not covered by any valid checkpoint (None: all covered)."""
    problems: list[Problem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def first_bad_entry(self) -> int | None:
        """Lowest entry index named by any problem."""
        found = [p.entry_index for p in self.problems if p.entry_index is not None]
        return min(found) if found else None

    @property
    def bad_checkpoints(self) -> list[int]:
        """Indices of checkpoints found faulty in themselves."""
        return sorted(
            {
                p.checkpoint_index
                for p in self.problems
                if p.kind.startswith("checkpoint") and p.checkpoint_index is not None
            }
        )

    def summary(self) -> str:
        """Human-readable multi-line summary for the CLI."""
        head = "OK" if self.ok else f"FAILED: {len(self.problems)} problem(s)"
        lines = [
            f"{head}: {self.entry_count} entries, {self.checkpoint_count} checkpoints, "
            f"entries 0..{self.verified_size - 1} verified against a signed checkpoint"
            if self.verified_size
            else f"{head}: {self.entry_count} entries, {self.checkpoint_count} checkpoints"
        ]
        lines += [f"  [{p.kind}] {p.message}" for p in self.problems]
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)


# Columns of the log as the analysis sees it. A None means "unknown" (a hypothesised original
# that is not in the export); malformed fields use sentinels that never match.
_Cols = tuple[list[int | None], list[bytes | None], list[bytes | None]]
_BAD_SEQ = -1
_BAD_PREV = b""


def _prefix_roots(leaves: Sequence[bytes | None], sizes: Sequence[int]) -> dict[int, bytes | None]:
    """Roots of leaves[:s] for each s in sizes (ascending) in one O(n) pass; None if unknown."""
    out: dict[int, bytes | None] = {}
    acc = MerkleAccumulator()
    known = True
    targets = sorted(set(sizes))
    ti = 0
    while ti < len(targets) and targets[ti] == 0:
        out[0] = EMPTY_ROOT
        ti += 1
    for i, h in enumerate(leaves):
        if ti >= len(targets):
            break
        if h is None:
            known = False
        elif known:
            acc.append(h)
        while ti < len(targets) and targets[ti] == i + 1:
            out[targets[ti]] = acc.root() if known else None
            ti += 1
    for s in targets[ti:]:
        out[s] = None
    return out


def _first_anomalies(cols: _Cols) -> tuple[int | None, int | None]:
    """First index with a wrong seq, and first index whose prev is not its predecessor's hash."""
    seqs, prevs, leaves = cols
    bad_seq = next((i for i, s in enumerate(seqs) if s is not None and s != i), None)
    bad_link = None
    for i, p in enumerate(prevs):
        expected = _GENESIS if i == 0 else leaves[i - 1]
        if p is not None and expected is not None and p != expected:
            bad_link = i
            break
    return bad_seq, bad_link


def _explains(cols: _Cols, start: int, evidence: Sequence[tuple[int, Checkpoint]]) -> bool:
    """Is this (reconstructed) log consistent with seq, prev and every trusted checkpoint?"""
    seqs, prevs, leaves = cols
    n = len(seqs)
    for i in range(start, n):
        s = seqs[i]
        if s is not None and s != i:
            return False
        p = prevs[i]
        expected = _GENESIS if i == 0 else leaves[i - 1]
        if p is not None and expected is not None and p != expected:
            return False
    if any(cp.size > n for _, cp in evidence):
        return False
    roots = _prefix_roots(leaves, [cp.size for _, cp in evidence])
    return all(roots[cp.size] in (None, cp.root) for _, cp in evidence)


def _as_hash(p: bytes | None) -> bytes | None:
    return p if p is not None and len(p) == HASH_SIZE else None


_Hypothesis = Callable[[_Cols, int, int], tuple[_Cols, str, str] | None]


def _h_swapped(cols: _Cols, p: int, total: int) -> tuple[_Cols, str, str] | None:
    seqs, prevs, leaves = cols
    if p + 1 >= len(seqs):
        return None

    def sw(col: list[Any]) -> list[Any]:
        return col[:p] + [col[p + 1], col[p]] + col[p + 2 :]

    msg = (
        f"entries {p} and {p + 1} are in swapped order: the entry at position {p} carries "
        f"seq {seqs[p]}; restore the original order (sorting by seq) and verify again"
    )
    return (sw(seqs), sw(prevs), sw(leaves)), "entries_reordered", msg


def _h_removed(cols: _Cols, p: int, total: int) -> tuple[_Cols, str, str] | None:
    seqs, prevs, leaves = cols
    if p >= len(seqs):
        return None
    s = seqs[p]
    gap = s - p if s is not None and s > p else 1
    if gap > total:
        gap = 1
    hole_leaves: list[bytes | None] = [None] * (gap - 1) + [_as_hash(prevs[p])]
    new = (
        seqs[:p] + [None] * gap + seqs[p:],
        prevs[:p] + [None] * gap + prevs[p:],
        leaves[:p] + hole_leaves + leaves[p:],
    )
    which = f"entry {p} is" if gap == 1 else f"entries {p}..{p + gap - 1} are"
    msg = (
        f"{which} missing: the entry now at position {p} has seq {s} and records the hash "
        f"of a predecessor that is not in the export; recover the missing entry from a backup "
        f"or the database"
    )
    return new, "entry_removed", msg


def _h_inserted(cols: _Cols, p: int, total: int) -> tuple[_Cols, str, str] | None:
    seqs, prevs, leaves = cols
    if p >= len(seqs):
        return None
    new = (seqs[:p] + seqs[p + 1 :], prevs[:p] + prevs[p + 1 :], leaves[:p] + leaves[p + 1 :])
    msg = (
        f"entry {p} was inserted: it is not part of the signed log (the entry after it "
        f"records the hash of entry {p - 1}); remove it and find out who wrote it"
    )
    return new, "entry_inserted", msg


def _h_changed(cols: _Cols, p: int, total: int) -> tuple[_Cols, str, str] | None:
    seqs, prevs, leaves = cols
    if p >= len(seqs):
        return None
    original = _as_hash(prevs[p + 1]) if p + 1 < len(seqs) else None
    new = (
        seqs[:p] + [None] + seqs[p + 1 :],
        prevs[:p] + [None] + prevs[p + 1 :],
        leaves[:p] + [original] + leaves[p + 1 :],
    )
    if original is not None:
        why = f"its hash no longer matches the one entry {p + 1} recorded"
    else:
        why = (
            "it is the last entry, so no later entry records its hash, and it no longer "
            "matches the signed root covering it or its own seq/prev"
        )
    msg = f"entry {p} was changed: {why}; compare it with a backup or the database"
    return new, "entry_changed", msg


def _h_truncated(cols: _Cols, p: int, total: int) -> tuple[_Cols, str, str] | None:
    seqs, prevs, leaves = cols
    if p != len(seqs) or total <= p:
        return None
    pad: list[Any] = [None] * (total - p)
    msg = (
        f"entries {p}..{total - 1} are missing from the end: a signed checkpoint covers "
        f"{total} entries but the export has {p}; export again or recover them from a backup"
    )
    return (seqs + pad, prevs + pad, leaves + pad), "entries_truncated", msg


_HYPOTHESES: tuple[_Hypothesis, ...] = (
    _h_swapped,
    _h_removed,
    _h_inserted,
    _h_changed,
    _h_truncated,
)


def _pinpoint(
    cols: _Cols,
    evidence: Sequence[tuple[int, Checkpoint]],
    actual_roots: Mapping[int, bytes | None],
    verified: int,
) -> Problem | None:
    """Find the first bad entry and the single change that explains all evidence, if any."""
    seqs, prevs, leaves = cols
    n = len(seqs)
    bad_seq, bad_link = _first_anomalies(cols)
    root_bad = [(ci, cp) for ci, cp in evidence if cp.size > n or actual_roots.get(cp.size) != cp.root]
    if bad_seq is None and bad_link is None and not root_bad:
        return None
    total = max((cp.size for _, cp in evidence), default=n)
    candidates: set[int] = set()
    for x in (bad_seq, bad_link):
        if x is not None:
            candidates |= {x - 1, x}
    first_root_ci: int | None = None
    first_root_cp: Checkpoint | None = None
    if root_bad:
        first_root_ci, first_root_cp = min(root_bad, key=lambda t: t[1].size)
        candidates.add(min(first_root_cp.size, n) - 1)
        if total > n:
            candidates.add(n)
    for p in sorted(c for c in candidates if 0 <= c <= n):
        for hypothesis in _HYPOTHESES:
            built = hypothesis(cols, p, total)
            if built is not None and _explains(built[0], max(0, p - 1), evidence):
                _, kind, msg = built
                return Problem(kind, p, None, msg + _confirmed_note(verified))

    if bad_seq is None and bad_link is None:
        assert first_root_ci is not None and first_root_cp is not None
        hi = min(first_root_cp.size, n)
        msg = (
            f"one or more of entries {verified}..{hi - 1} differ from what checkpoint "
            f"{first_root_ci} (size {first_root_cp.size}, {first_root_cp.time}) signed, yet "
            f"their seq numbers and hash chain are intact: someone with write access recomputed "
            f"the chain, so the signed root cannot tell which entry; diff against a backup"
        )
        return Problem("entries_rewritten", verified, first_root_ci, msg)
    lowest = min(x for x in (bad_seq, bad_link) if x is not None)
    p0 = lowest - 1 if lowest == bad_link and lowest >= 1 and lowest - 1 >= verified else lowest
    details = []
    if bad_seq is not None:
        details.append(f"entry {bad_seq} carries seq {_show_seq(seqs[bad_seq])}")
    if bad_link is not None:
        details.append(
            f"entry {bad_link}'s prev does not match "
            + ("the genesis value" if bad_link == 0 else f"entry {bad_link - 1}'s hash")
        )
    msg = (
        f"entry {p0} is the first that does not match the log as written ("
        + "; ".join(details)
        + "); no single change, removal, insertion or swap explains all evidence, so several "
        "entries were altered: diff against a backup from this point on" + _confirmed_note(verified)
    )
    return Problem("entry_mismatch", p0, None, msg)


def _show_seq(s: int | None) -> str:
    return "(missing or malformed)" if s == _BAD_SEQ or s is None else str(s)


def _confirmed_note(verified: int) -> str:
    if verified:
        return f". Entries 0..{verified - 1} match a signed checkpoint and are intact"
    return ""


def _screen_checkpoints(
    checkpoints: Sequence[Checkpoint],
    public_key: Ed25519PublicKey | Sequence[Ed25519PublicKey],
    origin: str | None,
) -> tuple[list[tuple[int, Checkpoint]], list[Problem]]:
    """Checkpoints whose signature, origin and order are good, and the problems with the rest."""
    problems: list[Problem] = []
    good: list[tuple[int, Checkpoint]] = []
    expected_origin = origin
    last_time: datetime | None = None
    for ci, cp in enumerate(checkpoints):
        try:
            verify_checkpoint(cp, public_key)
        except CheckpointFormatError as exc:
            problems.append(Problem("checkpoint_malformed", None, ci, f"checkpoint {ci} is malformed: {exc}"))
            continue
        except CheckpointSignatureError as exc:
            problems.append(Problem("checkpoint_signature", None, ci, f"checkpoint {ci}: {exc}"))
            continue
        if expected_origin is None:
            expected_origin = cp.origin
        elif cp.origin != expected_origin:
            problems.append(
                Problem(
                    "checkpoint_origin",
                    None,
                    ci,
                    f"checkpoint {ci} is for log {cp.origin!r}, not {expected_origin!r}: "
                    "it belongs to another log; export the matching log",
                )
            )
            continue
        if good and cp.size < good[-1][1].size:
            prev_ci, prev_cp = good[-1]
            problems.append(
                Problem(
                    "checkpoint_order",
                    None,
                    ci,
                    f"checkpoint {ci} has size {cp.size}, smaller than checkpoint {prev_ci} "
                    f"before it (size {prev_cp.size}): a log never shrinks, so the checkpoint "
                    "file was reordered or the log was rolled back",
                )
            )
            continue
        cp_time = _parse_utc(cp.time)
        if last_time is not None and cp_time < last_time:
            problems.append(
                Problem(
                    "checkpoint_order",
                    None,
                    ci,
                    f"checkpoint {ci} is dated {cp.time}, earlier than the checkpoint before "
                    "it: the signing clock went backwards; check the appliance's time sync",
                )
            )
        last_time = cp_time if last_time is None else max(last_time, cp_time)
        good.append((ci, cp))
    return good, problems


def verify_log(
    entries: Sequence[bytes],
    checkpoints: Sequence[Checkpoint],
    public_key: Ed25519PublicKey | Sequence[Ed25519PublicKey],
    *,
    origin: str | None = None,
) -> VerifyReport:
    """Verify an exported log offline with the public key alone and pinpoint any tampering.

    Checks every checkpoint signature, their order and mutual consistency, that the Merkle
    root of entries[:size] equals each checkpoint's root, and each entry's ``seq`` and ``prev``.
    Entries after the last valid checkpoint are reported as an unsealed tail (a note, not a
    problem). ``origin`` pins the expected log name; by default the first valid checkpoint's.

    Consistency between checkpoints is established by recomputation: two checkpoints whose
    roots both equal roots recomputed from the same entries are consistent by construction,
    so a consistency proof built from those entries would add nothing. A signed root that
    disagrees with entries a later signed checkpoint confirms is reported as inconsistent.
    """
    n = len(entries)
    problems: list[Problem] = []
    notes: list[str] = []

    seqs: list[int | None] = []
    prevs: list[bytes | None] = []
    leaves: list[bytes | None] = []
    for e in entries:
        leaves.append(leaf_hash(e))
        try:
            obj = parse_entry(e)
        except EntryFormatError:
            seqs.append(_BAD_SEQ)
            prevs.append(_BAD_PREV)
            continue
        seqs.append(obj["seq"])
        prevs.append(bytes.fromhex(obj["prev"]))

    good, cp_problems = _screen_checkpoints(checkpoints, public_key, origin)
    problems += cp_problems

    actual_roots = _prefix_roots(leaves, [cp.size for _, cp in good if cp.size <= n])
    matching = [(ci, cp) for ci, cp in good if cp.size <= n and actual_roots[cp.size] == cp.root]
    verified = max((cp.size for _, cp in matching), default=0)
    anchor = max(matching, key=lambda t: t[1].size) if matching else None
    evidence: list[tuple[int, Checkpoint]] = []
    for ci, cp in good:
        if anchor is not None and cp.size <= verified and actual_roots[cp.size] != cp.root:
            problems.append(
                Problem(
                    "checkpoint_inconsistent",
                    None,
                    ci,
                    f"checkpoint {ci} (size {cp.size}, {cp.time}) is not consistent with "
                    f"checkpoint {anchor[0]} (size {anchor[1].size}, {anchor[1].time}), whose "
                    "root matches the entries: the same key signed two different histories, "
                    "so the log was rewritten after it was issued or it belongs to another log",
                )
            )
        else:
            evidence.append((ci, cp))

    cols: _Cols = (seqs, prevs, leaves)
    entry_problem = _pinpoint(cols, evidence, actual_roots, verified)
    if entry_problem is not None:
        problems.append(entry_problem)

    covered = max((cp.size for _, cp in evidence), default=0)
    if n and not good:
        problems.append(
            Problem(
                "unsigned",
                None,
                None,
                f"none of the {n} entries is covered by a validly signed checkpoint, so nothing "
                "is proven; export again with a fresh checkpoint and the right public key",
            )
        )
    unsealed_from = covered if covered < n else None
    if good and unsealed_from is not None:
        notes.append(_unsealed_note(covered, n))
    return VerifyReport(
        ok=not problems,
        entry_count=n,
        checkpoint_count=len(checkpoints),
        verified_size=verified,
        unsealed_from=unsealed_from,
        problems=problems,
        notes=notes,
    )


def _unsealed_note(covered: int, n: int) -> str:
    return (
        f"entries {covered}..{n - 1} are an unsealed tail: no signed checkpoint covers "
        "them yet, so only their seq and hash chain were checked; they are proven once "
        "the next checkpoint is signed"
    )


# --------------------------------------------------------------------------- streaming verification

#: Entries are read in blocks of this many bytes: memory stays flat whatever the log's size.
_BLOCK = 4 << 20
_LEAF = b"\x00"
_NODE = b"\x01"

Progress = Callable[[int], None]
"""Called with the number of bytes of entries.jsonl read so far (for a progress bar)."""


def _stream_entries(
    path: Path,
    start: int,
    acc_stack: list[bytes],
    prev_hex: str,
    roots: Mapping[int, bytes],
    progress: Progress | None,
) -> tuple[int, bytes | None] | None:
    """Check entries `start`.. of path in one pass; None at the first anomaly of any kind.

    `acc_stack` is the Merkle frontier at `start` (modified in place); each entry must decode
    as JSON with seq == its index and prev == the previous entry's leaf hash, and the root at
    every size in `roots` must match. Returns (entry count, root at the end or None).
    Entries before `start` are skipped unread; the one before it is hashed for the prev check.
    """
    sha = hashlib.sha256
    targets = sorted(s for s in roots if s > start)
    ti = 0
    i = 0
    size = start
    done = 0
    with open(path, "rb") as f:
        rest = b""
        while True:
            block = f.read(_BLOCK)
            done += len(block)
            if progress is not None:
                progress(done)
            if block and i + block.count(b"\n") < start - 1:
                # Every line ending in this block lies before start - 1: skip without splitting.
                c = block.count(b"\n")
                i += c
                rest = block[block.rfind(b"\n") + 1 :] if c else rest + block
                continue
            if block:
                lines = (rest + block).split(b"\n")
                rest = lines.pop()
            else:
                lines = [rest] if rest else []
            for line in lines:
                if i < start:
                    if i == start - 1:
                        prev_hex = sha(_LEAF + line).hexdigest()
                    i += 1
                    continue
                h = sha(_LEAF + line).digest()
                try:
                    obj = _fast_loads(line)
                except ValueError:
                    return None
                if type(obj) is not dict:
                    return None
                seq = obj.get("seq")
                if type(seq) is not int or seq != i or obj.get("prev") != prev_hex:
                    return None
                prev_hex = h.hex()
                # Append to the frontier: one node hash per trailing 1 bit of the old size.
                n = size
                while n & 1:
                    h = sha(_NODE + acc_stack.pop() + h).digest()
                    n >>= 1
                acc_stack.append(h)
                size += 1
                i += 1
                while ti < len(targets) and targets[ti] == size:
                    if _stack_root(acc_stack) != roots[size]:
                        return None
                    ti += 1
            if not block:
                break
    if i < start or ti < len(targets):
        return None
    return i, (_stack_root(acc_stack) if acc_stack else None)


def _count_lines(path: Path) -> int:
    """Entries in entries.jsonl, counted as read_export splits them."""
    n, last = 0, b"\n"
    with open(path, "rb") as f:
        while block := f.read(_BLOCK):
            n += block.count(b"\n")
            last = block[-1:]
    return n + (last != b"\n")


def _stack_root(stack: list[bytes]) -> bytes:
    r = stack[-1]
    for h in reversed(stack[:-1]):
        r = node_hash(h, r)
    return r


def _read_checkpoints(d: Path) -> list[Checkpoint]:
    try:
        raw_cps = (d / CHECKPOINTS_FILE).read_bytes()
    except FileNotFoundError as exc:
        raise ExportFormatError(
            f"{exc.filename} is missing: an export needs both {ENTRIES_FILE} and {CHECKPOINTS_FILE}"
        ) from exc
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


def verify_export_dir(
    directory: str | os.PathLike[str],
    public_key: Ed25519PublicKey | Sequence[Ed25519PublicKey],
    *,
    origin: str | None = None,
    progress: Progress | None = None,
) -> VerifyReport:
    """verify_log over an export directory, streaming: flat memory and one pass when all is well.

    The common case (nothing tampered) is decided in one streaming pass that never holds the
    log in memory. At the first anomaly of any kind it falls back to verify_log over the whole
    export, which loads it and pinpoints the entry; both give the same report for a clean log.
    """
    d = Path(directory)
    if not (d / ENTRIES_FILE).exists():
        raise ExportFormatError(
            f"{d / ENTRIES_FILE} is missing: an export needs both {ENTRIES_FILE} and {CHECKPOINTS_FILE}"
        )
    cps = _read_checkpoints(d)
    good, problems = _screen_checkpoints(cps, public_key, origin)
    roots: dict[int, bytes] = {}
    clean = not problems and bool(good)
    for _, cp in good:
        if roots.setdefault(cp.size, cp.root) != cp.root:
            clean = False
    if clean and 0 in roots and roots[0] != EMPTY_ROOT:
        clean = False
    if clean:
        res = _stream_entries(d / ENTRIES_FILE, 0, [], GENESIS_PREV, roots, progress)
        if res is not None:
            n, _ = res
            covered = max(roots)
            return VerifyReport(
                ok=True,
                entry_count=n,
                checkpoint_count=len(cps),
                verified_size=covered,
                unsealed_from=covered if covered < n else None,
                notes=[_unsealed_note(covered, n)] if covered < n else [],
            )
    entries, cps = read_export(d)
    return verify_log(entries, cps, public_key, origin=origin)


@dataclass(frozen=True)
class SinceReport:
    """Outcome of verify_since: the log grew from `old_size` to `new_size` consistently."""

    ok: bool
    old_size: int
    new_size: int
    entry_count: int
    problem: str | None = None

    def summary(self) -> str:
        if not self.ok:
            return f"FAILED: {self.problem}"
        if self.new_size == self.old_size:
            return f"OK: no new signed entries since the checkpoint of size {self.old_size}"
        return (
            f"OK: consistent with your checkpoint of size {self.old_size}; entries "
            f"{self.old_size}..{self.new_size - 1} verified against the checkpoint of size {self.new_size}"
        )


def verify_since(
    directory: str | os.PathLike[str],
    old: Checkpoint,
    public_key: Ed25519PublicKey | Sequence[Ed25519PublicKey],
    *,
    progress: Progress | None = None,
) -> SinceReport:
    """Check a newer export against a checkpoint the auditor verified before, and only what is new.

    `old` is the auditor's earlier checkpoint (parse_checkpoint_note already checked its
    signature). Steps: the export's newest valid checkpoint (size n) is found and checked; the
    RFC 9162 consistency proof from old.size to n (from consistency.jsonl) is verified against
    both signed roots; the old tree's frontier taken from that proof then reproduces, from the
    entries after old.size alone, every later checkpoint's root, with each entry's seq and prev.
    Entries before old.size are not decoded or hashed (except the last, for the prev link).
    """
    d = Path(directory)

    def fail(msg: str, n: int = 0, entries: int = 0) -> SinceReport:
        return SinceReport(False, old.size, n, entries, msg)

    cps = _read_checkpoints(d)
    good, problems = _screen_checkpoints(cps, public_key, old.origin)
    if problems:
        return fail("; ".join(p.message for p in problems))
    if not good:
        return fail(f"the export has no valid checkpoint for {old.origin}")
    newest = max((cp for _, cp in good), key=lambda c: c.size)
    m, n = old.size, newest.size
    if n < m:
        return fail(
            f"the export's newest checkpoint has size {n}, smaller than your checkpoint's {m}: "
            "the log was rolled back or the export is older than your checkpoint",
            n,
        )
    proof: list[bytes] = []
    if 0 < m < n:
        found = None
        try:
            for line in (d / CONSISTENCY_FILE).read_bytes().splitlines():
                rec = json.loads(line)
                if rec.get("old_size") == m and rec.get("new_size") == n:
                    found = [base64.b64decode(x, validate=True) for x in rec["proof"]]
                    break
        except (OSError, ValueError, KeyError, TypeError, binascii.Error) as e:
            return fail(f"{d / CONSISTENCY_FILE} is unreadable: {e}", n)
        if found is None:
            return fail(
                f"{d / CONSISTENCY_FILE} has no proof from size {m} to {n}: your checkpoint is not "
                "one this log signed, or the export is incomplete",
                n,
            )
        proof = found
    try:
        verify_consistency(m, n, old.root, newest.root, proof)
    except ProofError as e:
        return fail(f"consistency proof from your checkpoint (size {m}) to size {n}: {e}", n)
    if m == n:
        # Nothing new is signed: equal roots were the proof; the export must hold no more entries.
        count = _count_lines(d / ENTRIES_FILE)
        if count != n:
            return fail(f"the export has {count} entries but its newest checkpoint covers {n}", n, count)
        return SinceReport(True, m, n, count)
    stack = frontier_from_consistency(m, n, old.root, proof) if m else []
    roots = {cp.size: cp.root for _, cp in good if cp.size > m}
    res = _stream_entries(d / ENTRIES_FILE, m, stack, GENESIS_PREV, roots, progress)
    if res is None:
        return fail(
            f"entries after {m} do not reproduce the signed roots up to size {n}, or an entry's "
            "seq/prev is wrong: run a full `holdfast audit verify` (without --since) to pinpoint it",
            n,
        )
    count, _ = res
    if count != n:
        return fail(f"the export has {count} entries but its newest checkpoint covers {n}", n, count)
    return SinceReport(True, m, n, count)


# --------------------------------------------------------------------------- export


def _atomic_write(path: Path, data: bytes) -> None:
    """Write via a temp file and rename so a crash never leaves half an export."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


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
    _atomic_write(d / ENTRIES_FILE, b"".join(e + b"\n" for e in entries))
    _atomic_write(d / CHECKPOINTS_FILE, b"".join(canonical_json(cp.to_dict()) + b"\n" for cp in checkpoints))


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
    try:
        raw_entries = (d / ENTRIES_FILE).read_bytes()
        raw_cps = (d / CHECKPOINTS_FILE).read_bytes()
    except FileNotFoundError as exc:
        raise ExportFormatError(
            f"{exc.filename} is missing: an export needs both {ENTRIES_FILE} and {CHECKPOINTS_FILE}"
        ) from exc
    entries = raw_entries.split(b"\n")
    if entries[-1] == b"":
        entries.pop()
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
    return entries, checkpoints
