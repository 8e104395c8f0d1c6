"""Verifying an exported tamper-evident log and pinpointing what was changed.

verify_log checks every checkpoint signature, their order and agreement, the Merkle root of the
entries at each signed size and every entry's ``seq`` and ``prev``; when something disagrees,
_pinpoint tries each single change (swap, removal, insertion, change, truncation, the ``_h_*``
hypotheses) and names the one that explains all the evidence. It holds the whole log in memory
to do that; vault.ledger.streamverify decides the common, untampered case in one streaming pass first.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from vault.ledger.entries import (
    _GENESIS,
    Checkpoint,
    CheckpointFormatError,
    CheckpointSignatureError,
    EntryFormatError,
    _parse_utc,
    parse_entry,
    verify_checkpoint,
)
from vault.ledger.merkle import EMPTY_ROOT, HASH_SIZE, MerkleAccumulator, leaf_hash

__all__ = ["Problem", "VerifyReport", "unsealed_note", "screen_checkpoints", "verify_log"]


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


def _spliced(cols: _Cols, p: int, drop: int, seq: list[Any], prev: list[Any], leaf: list[Any]) -> _Cols:
    """The columns with `drop` entries at position p replaced by `seq`, `prev` and `leaf`: a
    hypothesis edits all three alike, so row i stays one entry."""
    seqs, prevs, leaves = cols
    return (
        seqs[:p] + seq + seqs[p + drop :],
        prevs[:p] + prev + prevs[p + drop :],
        leaves[:p] + leaf + leaves[p + drop :],
    )


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
    new = _spliced(cols, p, 0, [None] * gap, [None] * gap, hole_leaves)
    which = f"entry {p} is" if gap == 1 else f"entries {p}..{p + gap - 1} are"
    msg = (
        f"{which} missing: the entry now at position {p} has seq {s} and records the hash "
        f"of a predecessor that is not in the export; recover the missing entry from a backup "
        f"or the database"
    )
    return new, "entry_removed", msg


def _h_inserted(cols: _Cols, p: int, total: int) -> tuple[_Cols, str, str] | None:
    if p >= len(cols[0]):
        return None
    msg = (
        f"entry {p} was inserted: it is not part of the signed log (the entry after it "
        f"records the hash of entry {p - 1}); remove it and find out who wrote it"
    )
    return _spliced(cols, p, 1, [], [], []), "entry_inserted", msg


def _h_changed(cols: _Cols, p: int, total: int) -> tuple[_Cols, str, str] | None:
    seqs, prevs, leaves = cols
    if p >= len(seqs):
        return None
    original = _as_hash(prevs[p + 1]) if p + 1 < len(seqs) else None
    new = _spliced(cols, p, 1, [None], [None], [original])
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


def screen_checkpoints(
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

    good, cp_problems = screen_checkpoints(checkpoints, public_key, origin)
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
        notes.append(unsealed_note(covered, n))
    return VerifyReport(
        ok=not problems,
        entry_count=n,
        checkpoint_count=len(checkpoints),
        verified_size=verified,
        unsealed_from=unsealed_from,
        problems=problems,
        notes=notes,
    )


def unsealed_note(covered: int, n: int) -> str:
    return (
        f"entries {covered}..{n - 1} are an unsealed tail: no signed checkpoint covers "
        "them yet, so only their seq and hash chain were checked; they are proven once "
        "the next checkpoint is signed"
    )
