"""RFC 6962 / RFC 9162 Merkle tree math for Holdfast's tamper-evident logs.

Kept free of I/O and databases so the same code hashes in the appliance, in the exporter and
in an auditor's offline verifier; an auditor must be able to reproduce every hash from the
RFC alone, so nothing here deviates from RFC 9162 section 2.1.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Iterator, Sequence

__all__ = [
    "EMPTY_ROOT",
    "HASH_SIZE",
    "ConsistencyProofError",
    "InclusionProofError",
    "MerkleAccumulator",
    "MerkleError",
    "MerkleLevels",
    "MerkleRangeError",
    "ProofError",
    "consistency_proof",
    "frontier_from_consistency",
    "inclusion_proof",
    "leaf_hash",
    "leaf_hashes",
    "node_hash",
    "root",
    "verify_consistency",
    "verify_inclusion",
]

HASH_SIZE = 32
_LEAF_PREFIX = b"\x00"
_NODE_PREFIX = b"\x01"

EMPTY_ROOT: bytes = hashlib.sha256(b"").digest()
_digest = type(hashlib.sha256()).digest
"""MTH({}) = SHA-256() per RFC 9162 2.1.1: the root of a log with no entries."""


class MerkleError(Exception):
    """Base class for Merkle tree errors."""


class MerkleRangeError(MerkleError, ValueError):
    """A caller asked for a proof or root outside the tree (programming error, not tampering)."""


class ProofError(MerkleError):
    """A proof did not verify: the data, the tree size or the root is not what was claimed."""


class InclusionProofError(ProofError):
    """An inclusion proof does not tie the leaf to the root."""


class ConsistencyProofError(ProofError):
    """A consistency proof does not show the new tree extends the old one (history rewritten)."""


def leaf_hash(data: bytes) -> bytes:
    """SHA-256(0x00 || data); the prefix keeps leaves and nodes from being confused."""
    return hashlib.sha256(_LEAF_PREFIX + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """SHA-256(0x01 || left || right) for an interior node."""
    return hashlib.sha256(_NODE_PREFIX + left + right).digest()


def leaf_hashes(entries: Iterable[bytes]) -> list[bytes]:
    """leaf_hash of each entry; map() keeps the loop in C (a streaming verifier hashes millions)."""
    return list(map(_digest, map(hashlib.sha256, map(_LEAF_PREFIX.__add__, entries))))


def _check_hash(value: bytes, what: str) -> None:
    if not isinstance(value, bytes | bytearray) or len(value) != HASH_SIZE:
        raise MerkleRangeError(f"{what} must be {HASH_SIZE} bytes of SHA-256, got {value!r:.80}")


class MerkleAccumulator:
    """Append-only Merkle tree state in O(log n) memory: the roots of its perfect subtrees.

    Appending costs one leaf hash plus amortised one node hash, so feeding n leaves costs
    O(n) hashing in total, and root() costs O(log n) at any moment. The database layer can
    restore it at startup from all leaf hashes (from_leaf_hashes) or, cheaper, from the
    persisted frontier (from_frontier).
    """

    __slots__ = ("_size", "_stack")

    def __init__(self) -> None:
        self._size = 0
        # Roots of the perfect subtrees, largest (leftmost) first; one per set bit of _size.
        self._stack: list[bytes] = []

    @classmethod
    def from_leaf_hashes(cls, leaf_hashes: Iterable[bytes]) -> MerkleAccumulator:
        """Rebuild from every leaf hash in log order."""
        acc = cls()
        for h in leaf_hashes:
            acc.append(h)
        return acc

    @classmethod
    def from_frontier(cls, size: int, frontier: Sequence[bytes]) -> MerkleAccumulator:
        """Rebuild from a size and the frontier() saved earlier, without re-reading the log."""
        if not isinstance(size, int) or size < 0:
            raise MerkleRangeError(f"tree size must be a non-negative integer, got {size!r}")
        if len(frontier) != size.bit_count():
            raise MerkleRangeError(
                f"a tree of size {size} has {size.bit_count()} frontier hashes, "
                f"got {len(frontier)}: the saved state is corrupt, rebuild from leaf hashes"
            )
        for h in frontier:
            _check_hash(h, "frontier hash")
        acc = cls()
        acc._size = size
        acc._stack = [bytes(h) for h in frontier]
        return acc

    @property
    def size(self) -> int:
        """Number of leaves appended so far."""
        return self._size

    def frontier(self) -> list[bytes]:
        """The perfect-subtree roots, largest first; persist with size to restore quickly."""
        return list(self._stack)

    def append(self, leaf: bytes) -> int:
        """Append a leaf hash (not raw data, see leaf_hash) and return its 0-based index."""
        _check_hash(leaf, "leaf hash")
        index = self._size
        h = bytes(leaf)
        n = index
        # Each trailing 1 bit of the old size is a perfect subtree of the same height to merge.
        while n & 1:
            h = node_hash(self._stack.pop(), h)
            n >>= 1
        self._stack.append(h)
        self._size = index + 1
        return index

    def extend(self, leaves: Sequence[bytes]) -> None:
        """Append many leaf hashes; the same tree as append() on each, in far fewer Python steps.

        Each run of 2**k leaves that starts at a multiple of 2**k is a perfect subtree: it is
        hashed level by level (map() over each level: no Python code per node) and pushed like
        one append of height k. The node hashes are the n - 1 that appending one by one computes.
        """
        leaves = list(leaves)
        if leaves and set(map(len, leaves)) != {HASH_SIZE}:
            raise MerkleRangeError(f"every leaf hash must be {HASH_SIZE} bytes")
        sha, prefix = hashlib.sha256, _NODE_PREFIX
        pos, n = 0, len(leaves)
        while pos < n:
            size = self._size
            k = (n - pos).bit_length() - 1
            if size:
                k = min(k, (size & -size).bit_length() - 1)
            level = leaves[pos : pos + (1 << k)]
            while len(level) > 1:
                pairs = map(bytes.__add__, level[0::2], level[1::2])
                level = list(map(_digest, map(sha, map(prefix.__add__, pairs))))
            h = level[0]
            m = size >> k
            while m & 1:
                h = sha(prefix + self._stack.pop() + h).digest()
                m >>= 1
            self._stack.append(h)
            self._size = size + (1 << k)
            pos += 1 << k

    def append_data(self, data: bytes) -> bytes:
        """Hash raw entry bytes as a leaf, append it, and return the leaf hash."""
        h = leaf_hash(data)
        self.append(h)
        return h

    def root(self) -> bytes:
        """MTH of all leaves so far; RFC 6962's largest-power-of-two split is a right fold."""
        if not self._stack:
            return EMPTY_ROOT
        r = self._stack[-1]
        for h in reversed(self._stack[:-1]):
            r = node_hash(h, r)
        return r

    def copy(self) -> MerkleAccumulator:
        """Independent copy, e.g. to try a hypothesis without disturbing the original."""
        acc = MerkleAccumulator()
        acc._size = self._size
        acc._stack = list(self._stack)
        return acc


def root(leaf_hashes: Sequence[bytes]) -> bytes:
    """MTH(D[n]) over leaf hashes in O(n) hashing."""
    return MerkleAccumulator.from_leaf_hashes(leaf_hashes).root()


def _split(n: int) -> int:
    """Largest power of two strictly smaller than n (n >= 2)."""
    return 1 << ((n - 1).bit_length() - 1)


def _slice_mth(leaf_hashes: Sequence[bytes]) -> Callable[[int, int], bytes]:
    return lambda lo, hi: root(leaf_hashes[lo:hi])


def inclusion_proof(index: int, leaf_hashes: Sequence[bytes]) -> list[bytes]:
    """PATH(m, D[n]) of RFC 9162 2.1.3.1 for leaf `index` in the tree of all leaf_hashes."""
    return _inclusion_path(index, len(leaf_hashes), _slice_mth(leaf_hashes))


def _inclusion_path(index: int, n: int, mth: Callable[[int, int], bytes]) -> list[bytes]:
    if not isinstance(index, int) or not 0 <= index < n:
        raise MerkleRangeError(f"leaf index {index!r} is outside a tree of size {n}")
    proof: list[bytes] = []
    lo, hi, m = 0, n, index
    # Iterative form of the recursion; siblings are collected top-down, emitted bottom-up.
    while hi - lo > 1:
        k = _split(hi - lo)
        if m < k:
            proof.append(mth(lo + k, hi))
            hi = lo + k
        else:
            proof.append(mth(lo, lo + k))
            lo, m = lo + k, m - k
    proof.reverse()
    return proof


def consistency_proof(old_size: int, new_size: int, leaf_hashes: Sequence[bytes]) -> list[bytes]:
    """PROOF(m, D[n]) of RFC 9162 2.1.4.1 using the first new_size of leaf_hashes.

    Empty for old_size == 0 or old_size == new_size: those need no proof.
    """
    if not isinstance(new_size, int) or not 0 <= new_size <= len(leaf_hashes):
        raise MerkleRangeError(f"new size {new_size!r} is outside 0..{len(leaf_hashes)} leaves")
    return _consistency_path(old_size, new_size, _slice_mth(leaf_hashes))


def _consistency_path(old_size: int, new_size: int, mth: Callable[[int, int], bytes]) -> list[bytes]:
    if not isinstance(old_size, int) or not 0 <= old_size <= new_size:
        raise MerkleRangeError(f"old size {old_size!r} must be within 0..new size {new_size}")
    if old_size in (0, new_size):
        return []
    proof: list[bytes] = []
    lo, hi, m, whole = 0, new_size, old_size, True
    while True:
        n = hi - lo
        if m == n:
            # SUBPROOF(m, D[m], b): nothing if this is the original old tree, else its hash.
            if not whole:
                proof.append(mth(lo, hi))
            break
        k = _split(n)
        if m <= k:
            proof.append(mth(lo + k, hi))
            hi = lo + k
        else:
            proof.append(mth(lo, lo + k))
            lo, m, whole = lo + k, m - k, False
    proof.reverse()
    return proof


class MerkleLevels:
    """Every level of the tree in flat byte arrays: any proof in O(log n) after O(n) hashing.

    Level 0 holds the leaf hashes, level i+1 the node hashes of complete pairs of level i, so
    the root of an aligned perfect subtree is one lookup and any other range (the right edge)
    splits into O(log n) of them. 2 x 32 bytes per leaf in total, without a Python object per
    hash: what `audit export` uses to write a consistency proof from every signed checkpoint.
    """

    def __init__(self, leaves: bytearray | bytes) -> None:
        if len(leaves) % HASH_SIZE:
            raise MerkleRangeError("leaf hashes must be a multiple of 32 bytes")
        self.size = len(leaves) // HASH_SIZE
        self.levels: list[bytes] = [bytes(leaves)]
        cur = self.levels[0]
        sha = hashlib.sha256
        while len(cur) >= 2 * HASH_SIZE:
            nxt = bytearray()
            for i in range(0, len(cur) - HASH_SIZE, 2 * HASH_SIZE):
                nxt += sha(_NODE_PREFIX + cur[i : i + 2 * HASH_SIZE]).digest()
            cur = bytes(nxt)
            self.levels.append(cur)

    def mth(self, lo: int, hi: int) -> bytes:
        """MTH(D[lo:hi]) for 0 <= lo < hi <= size."""
        width = hi - lo
        if width & (width - 1) == 0 and lo % width == 0:
            level = width.bit_length() - 1
            i = (lo >> level) * HASH_SIZE
            return self.levels[level][i : i + HASH_SIZE]
        k = _split(width)
        return node_hash(self.mth(lo, lo + k), self.mth(lo + k, hi))

    def root(self, size: int) -> bytes:
        return EMPTY_ROOT if size == 0 else self.mth(0, size)

    def inclusion_proof(self, index: int, size: int) -> list[bytes]:
        if not 0 < size <= self.size:
            raise MerkleRangeError(f"tree size {size} is outside 1..{self.size}")
        return _inclusion_path(index, size, self.mth)

    def consistency_proof(self, old_size: int, new_size: int) -> list[bytes]:
        if not 0 <= new_size <= self.size:
            raise MerkleRangeError(f"new size {new_size!r} is outside 0..{self.size} leaves")
        return _consistency_path(old_size, new_size, self.mth)


def frontier_from_consistency(
    old_size: int, new_size: int, old_root: bytes, proof: Sequence[bytes]
) -> list[bytes]:
    """The old tree's frontier (its perfect-subtree roots, largest first) out of a consistency proof.

    The proof's hashes on the old tree's side are exactly those subtrees (with the old root
    itself when old_size is a power of two). Call verify_consistency first; this only selects.
    With the frontier, the entries after old_size alone reproduce every later root
    (MerkleAccumulator.from_frontier), so a verifier never re-reads what it verified before.
    """
    if not 0 < old_size < new_size:
        raise MerkleRangeError("a frontier is taken from a proof between 0 < old size < new size")
    path = list(proof)
    if old_size & (old_size - 1) == 0:
        path.insert(0, bytes(old_root))
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    old_side = [path[0]]
    for c in path[1:]:
        if fn & 1 or fn == sn:
            old_side.append(c)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        fn >>= 1
        sn >>= 1
    frontier = list(reversed(old_side))
    if len(frontier) != old_size.bit_count():
        raise ConsistencyProofError(
            f"proof from size {old_size} to {new_size} does not carry the old tree's "
            f"{old_size.bit_count()} subtree roots"
        )
    return frontier


def _proof_walk(
    fn: int,
    sn: int,
    path: Sequence[bytes],
    error: type[ProofError],
    what: str,
    hashes: int | None = None,
) -> Iterator[tuple[bytes, bool]]:
    """RFC 9162's walk up the tree shared by both proof checks: yields each proof hash and whether
    it is the left sibling; the proof must end exactly at the root (`what` names it in the
    error, with its length: `hashes`, or the path's)."""
    n = len(path) if hashes is None else hashes
    for c in path:
        if sn == 0:
            raise error(f"{what} is too long ({n} hashes)")
        left = bool(fn & 1) or fn == sn
        yield c, left
        if left and not fn & 1:
            while fn and not fn & 1:
                fn >>= 1
                sn >>= 1
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise error(f"{what} is too short ({n} hashes)")


def verify_inclusion(leaf: bytes, index: int, size: int, proof: Sequence[bytes], root_hash: bytes) -> None:
    """Check an inclusion proof exactly as RFC 9162 2.1.3.2; raise InclusionProofError if bad."""
    _check_hash(leaf, "leaf hash")
    _check_hash(root_hash, "root hash")
    for p in proof:
        _check_hash(p, "proof element")
    if not isinstance(index, int) or not isinstance(size, int) or not 0 <= index < size:
        raise InclusionProofError(f"leaf index {index!r} is not inside a tree of size {size!r}")
    r = bytes(leaf)
    what = f"proof for leaf {index} in tree size {size}"
    for p, left in _proof_walk(index, size - 1, proof, InclusionProofError, what):
        r = node_hash(p, r) if left else node_hash(r, p)
    if r != root_hash:
        raise InclusionProofError(
            f"leaf {index} is not in the tree of size {size} with root {root_hash.hex()}: "
            "the entry, its index or the root differs from what was logged"
        )


def verify_consistency(
    old_size: int,
    new_size: int,
    old_root: bytes,
    new_root: bytes,
    proof: Sequence[bytes],
) -> None:
    """Check that new_root's tree extends old_root's (RFC 9162 2.1.4.2); raise if not."""
    _check_hash(old_root, "old root")
    _check_hash(new_root, "new root")
    for p in proof:
        _check_hash(p, "proof element")
    if not isinstance(old_size, int) or not isinstance(new_size, int):
        raise ConsistencyProofError("tree sizes must be integers")
    if not 0 <= old_size <= new_size:
        raise ConsistencyProofError(f"tree size went from {old_size} to {new_size}: a log never shrinks")
    if old_size == new_size:
        if proof:
            raise ConsistencyProofError("proof between equal tree sizes must be empty")
        if old_root != new_root:
            raise ConsistencyProofError(
                f"two different roots for the same tree size {old_size}: the log was forked"
            )
        return
    if old_size == 0:
        # The empty tree is a prefix of every tree; RFC 9162 defines no proof for it.
        if proof:
            raise ConsistencyProofError("proof from the empty tree must be empty")
        return
    path = list(proof)
    if old_size & (old_size - 1) == 0:
        path.insert(0, bytes(old_root))
    if not path:
        raise ConsistencyProofError(f"empty proof from size {old_size} to {new_size}")
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    what = f"proof from size {old_size} to {new_size}"
    for c, left in _proof_walk(fn, sn, path[1:], ConsistencyProofError, what, len(proof)):
        if left:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
        else:
            sr = node_hash(sr, c)
    if fr != old_root:
        raise ConsistencyProofError(
            f"the tree of size {new_size} does not contain the tree of size {old_size} with root "
            f"{old_root.hex()}: entries before {old_size} were changed or the log was forked"
        )
    if sr != new_root:
        raise ConsistencyProofError(
            f"the proof does not lead to the root {new_root.hex()} of size {new_size}: "
            "the newer tree is not an extension of the older one"
        )
