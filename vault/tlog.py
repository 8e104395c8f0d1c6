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
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from vault.merkle import (
    EMPTY_ROOT,
    HASH_SIZE,
    ConsistencyProofError,
    InclusionProofError,
    MerkleAccumulator,
    MerkleError,
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


def _is_lower_hex(s: str) -> bool:
    return all(c in "0123456789abcdef" for c in s)


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


def verify_checkpoint(cp: Checkpoint, public_key: Ed25519PublicKey) -> None:
    """Raise CheckpointFormatError or CheckpointSignatureError unless ``public_key`` signed cp."""
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


def verify_log(
    entries: Sequence[bytes],
    checkpoints: Sequence[Checkpoint],
    public_key: Ed25519PublicKey,
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
        notes.append(
            f"entries {covered}..{n - 1} are an unsealed tail: no signed checkpoint covers "
            "them yet, so only their seq and hash chain were checked; they are proven once "
            "the next checkpoint is signed"
        )
    return VerifyReport(
        ok=not problems,
        entry_count=n,
        checkpoint_count=len(checkpoints),
        verified_size=verified,
        unsealed_from=unsealed_from,
        problems=problems,
        notes=notes,
    )


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
