"""Verifying an export directory in one streaming pass, in flat memory (`holdfast audit verify`).

verify_export_dir decides an untampered log without holding it: each entry is hashed, its
``seq`` and ``prev`` checked, and the Merkle frontier (O(log n) hashes) gives the root at every
signed size. At the first anomaly it hands over to vault.ledger.verify.verify_log, which loads the
log and pinpoints the entry. verify_since checks only the entries after an auditor's earlier
checkpoint, joined to it by an RFC 9162 consistency proof.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from operator import itemgetter
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from orjson import loads as _fast_loads

from vault.ledger.entries import (
    CHECKPOINTS_FILE,
    CONSISTENCY_FILE,
    ENTRIES_FILE,
    GENESIS_PREV,
    Checkpoint,
    ExportFormatError,
    read_checkpoints,
    read_export,
)
from vault.ledger.merkle import (
    EMPTY_ROOT,
    MerkleAccumulator,
    ProofError,
    frontier_from_consistency,
    leaf_hash,
    leaf_hashes,
    verify_consistency,
)
from vault.ledger.verify import VerifyReport, screen_checkpoints, unsealed_note, verify_log

__all__ = ["Progress", "SinceReport", "verify_export_dir", "verify_since"]

#: Entries are read in blocks of this many bytes: memory stays flat whatever the log's size.
#: A block is hashed, then decoded (two passes over it), so it is kept small enough to stay in
#: the CPU cache between the two: 64 KiB took 10 % less CPU than 4 MiB over 1,000,000 entries.
_BLOCK = 64 << 10
_SEQ_PREV = itemgetter("seq", "prev")

Progress = Callable[[int], None]
"""Called with the number of bytes of entries.jsonl read so far (for a progress bar)."""


def _check_batch(lines: list[bytes], first: int, prev_hex: str) -> list[bytes] | None:
    """Leaf hashes of entries first.. (`lines`), or None unless each has seq == its index and
    prev == the previous entry's leaf hash (`prev_hex` for the first).

    The same checks as parse_entry and verify_log, a block at a time: each step is a map() or
    one comparison over the whole block, so no Python code runs per entry, and each decoded
    entry is freed as soon as its seq and prev are taken.
    """
    leaves = leaf_hashes(lines)
    try:
        # KeyError: seq or prev missing; TypeError: not a JSON object; ValueError: not JSON.
        seqs, prevs = zip(*map(_SEQ_PREV, map(_fast_loads, lines)), strict=True)
        # With every prev 64 characters long, equal concatenations mean equal prevs.
        linked = set(map(len, prevs)) == {64} and "".join(prevs) == prev_hex + b"".join(leaves[:-1]).hex()
    except (ValueError, KeyError, TypeError):
        return None
    # bool is a subclass of int and True == 1: the type check keeps them apart, as parse_entry does.
    if not linked or set(map(type, seqs)) != {int} or seqs != tuple(range(first, first + len(lines))):
        return None
    return leaves


def _stream_entries(
    path: Path,
    acc: MerkleAccumulator,
    prev_hex: str,
    roots: Mapping[int, bytes],
    progress: Progress | None,
) -> int | None:
    """Check entries acc.size.. of path in one pass; the entry count, or None at any anomaly.

    `acc` is the Merkle tree of the entries before (from a consistency proof's frontier, or
    empty); each later entry must decode as JSON with seq == its index and prev == the previous
    entry's leaf hash, and the root at every size in `roots` must match. Entries before
    acc.size are skipped unread, except the last of them, hashed for the prev check.
    """
    start = acc.size
    targets = sorted(s for s in roots if s > start)
    ti = 0
    i = 0
    done = 0
    with open(path, "rb") as f:
        rest = b""
        while True:
            block = f.read(_BLOCK)
            done += len(block)
            if progress is not None:
                progress(done)
            if block and start > 1 and i + block.count(b"\n") < start - 1:
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
            if i < start:
                skip = min(start - i, len(lines))
                if i + skip == start:
                    prev_hex = leaf_hash(lines[skip - 1]).hex()
                i += skip
                del lines[:skip]
            if lines:
                leaves = _check_batch(lines, i, prev_hex)
                if leaves is None:
                    return None
                prev_hex = leaves[-1].hex()
                first, i = i, i + len(lines)
                pos = 0
                while ti < len(targets) and targets[ti] <= i:
                    cut = targets[ti] - first
                    acc.extend(leaves[pos:cut])
                    pos = cut
                    if acc.root() != roots[targets[ti]]:
                        return None
                    ti += 1
                acc.extend(leaves[pos:])
            if not block:
                break
    if i < start or ti < len(targets):
        return None
    return i


def _count_lines(path: Path) -> int:
    """Entries in entries.jsonl, counted as read_export splits them."""
    n, last = 0, b"\n"
    with open(path, "rb") as f:
        while block := f.read(_BLOCK):
            n += block.count(b"\n")
            last = block[-1:]
    return n + (last != b"\n")


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
    cps = read_checkpoints(d)
    good, problems = screen_checkpoints(cps, public_key, origin)
    roots: dict[int, bytes] = {}
    clean = not problems and bool(good)
    for _, cp in good:
        if roots.setdefault(cp.size, cp.root) != cp.root:
            clean = False
    if clean and 0 in roots and roots[0] != EMPTY_ROOT:
        clean = False
    if clean:
        n = _stream_entries(d / ENTRIES_FILE, MerkleAccumulator(), GENESIS_PREV, roots, progress)
        if n is not None:
            covered = max(roots)
            return VerifyReport(
                ok=True,
                entry_count=n,
                checkpoint_count=len(cps),
                verified_size=covered,
                unsealed_from=covered if covered < n else None,
                notes=[unsealed_note(covered, n)] if covered < n else [],
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

    cps = read_checkpoints(d)
    good, problems = screen_checkpoints(cps, public_key, old.origin)
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
    acc = MerkleAccumulator.from_frontier(m, frontier_from_consistency(m, n, old.root, proof) if m else [])
    roots = {cp.size: cp.root for _, cp in good if cp.size > m}
    count = _stream_entries(d / ENTRIES_FILE, acc, GENESIS_PREV, roots, progress)
    if count is None:
        return fail(
            f"entries after {m} do not reproduce the signed roots up to size {n}, or an entry's "
            "seq/prev is wrong: run a full `holdfast audit verify` (without --since) to pinpoint it",
            n,
        )
    if count != n:
        return fail(f"the export has {count} entries but its newest checkpoint covers {n}", n, count)
    return SinceReport(True, m, n, count)
