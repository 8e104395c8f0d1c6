"""Tests for vault.ledger.merkle and vault.ledger.entries (invariant 7: tamper-evident, pinpointed logs)."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from vault.ledger.entries import (
    GENESIS_PREV,
    Checkpoint,
    CheckpointFormatError,
    CheckpointSignatureError,
    EntryFormatError,
    ExportFormatError,
    canonical_json,
    load_public_key,
    make_entry,
    read_export,
    sign_checkpoint,
    verify_checkpoint,
    write_export,
)
from vault.ledger.merkle import (
    EMPTY_ROOT,
    ConsistencyProofError,
    InclusionProofError,
    MerkleAccumulator,
    MerkleRangeError,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    leaf_hashes,
    root,
    verify_consistency,
    verify_inclusion,
)
from vault.ledger.verify import verify_log
from vault.sealed.keyid import key_id

# ---------------------------------------------------------------- reference data

# Certificate Transparency's reference leaves and RFC 6962 tree heads for sizes 0..8.
CT_LEAVES = [
    b"",
    b"\x00",
    b"\x10",
    b"\x20\x21",
    b"\x30\x31",
    b"\x40\x41\x42\x43",
    b"\x50\x51\x52\x53\x54\x55\x56\x57",
    b"\x60\x61\x62\x63\x64\x65\x66\x67\x68\x69\x6a\x6b\x6c\x6d\x6e\x6f",
]
CT_ROOTS = [
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]
CT_INCLUSION = [
    (
        0,
        8,
        [
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        5,
        8,
        [
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
]
CT_CONSISTENCY = [
    (1, 1, []),
    (
        2,
        5,
        [
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
    (
        6,
        8,
        [
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
]


def ref_mth(data: Sequence[bytes]) -> bytes:
    """RFC 6962 MTH written straight from the RFC, independent of vault.ledger.merkle."""
    n = len(data)
    if n == 0:
        return hashlib.sha256(b"").digest()
    if n == 1:
        return hashlib.sha256(b"\x00" + data[0]).digest()
    k = 1
    while k * 2 < n:
        k *= 2
    return hashlib.sha256(b"\x01" + ref_mth(data[:k]) + ref_mth(data[k:])).digest()


def hashes(n: int) -> list[bytes]:
    return [leaf_hash(i.to_bytes(4, "big")) for i in range(n)]


# ---------------------------------------------------------------- Merkle math


@pytest.mark.parametrize("size", range(9))
def test_rfc6962_reference_roots(size: int) -> None:
    leaves = [leaf_hash(d) for d in CT_LEAVES[:size]]
    assert root(leaves).hex() == CT_ROOTS[size]
    assert ref_mth(CT_LEAVES[:size]).hex() == CT_ROOTS[size]


def test_incremental_accumulator_matches_reference_roots() -> None:
    acc = MerkleAccumulator()
    assert acc.root() == EMPTY_ROOT
    for i, d in enumerate(CT_LEAVES):
        assert acc.append(leaf_hash(d)) == i
        assert acc.size == i + 1
        assert acc.root().hex() == CT_ROOTS[i + 1]


@pytest.mark.parametrize(("index", "size", "proof"), CT_INCLUSION)
def test_ct_inclusion_vectors(index: int, size: int, proof: list[str]) -> None:
    leaves = [leaf_hash(d) for d in CT_LEAVES[:size]]
    got = inclusion_proof(index, leaves)
    assert [p.hex() for p in got] == proof
    verify_inclusion(leaves[index], index, size, got, bytes.fromhex(CT_ROOTS[size]))


@pytest.mark.parametrize(("old", "new", "proof"), CT_CONSISTENCY)
def test_ct_consistency_vectors(old: int, new: int, proof: list[str]) -> None:
    leaves = [leaf_hash(d) for d in CT_LEAVES[:new]]
    got = consistency_proof(old, new, leaves)
    assert [p.hex() for p in got] == proof
    verify_consistency(old, new, bytes.fromhex(CT_ROOTS[old]), bytes.fromhex(CT_ROOTS[new]), got)


def test_accumulator_matches_recursive_reference_for_many_sizes() -> None:
    data = [i.to_bytes(2, "big") for i in range(130)]
    acc = MerkleAccumulator()
    for n in range(len(data) + 1):
        assert acc.root() == ref_mth(data[:n]), n
        if n < len(data):
            acc.append(leaf_hash(data[n]))


def test_accumulator_extend_builds_the_same_tree_as_append() -> None:
    """Batches of any length, from any starting size (aligned or not), give the reference roots."""
    data = [i.to_bytes(2, "big") for i in range(300)]
    leaves = [leaf_hash(d) for d in data]
    for batch in (1, 2, 3, 7, 64, 100, 299):
        acc = MerkleAccumulator()
        acc.append(leaves[0])
        pos = 1
        while pos < len(leaves):
            acc.extend(leaves[pos : pos + batch])
            pos = min(pos + batch, len(leaves))
            assert acc.size == pos
            assert acc.root() == ref_mth(data[:pos]), (batch, pos)
    with pytest.raises(MerkleRangeError):
        MerkleAccumulator().extend([b"short"])


def test_leaf_hashes_are_leaf_hash_of_each() -> None:
    assert leaf_hashes([b"", b"a", b"\x00" * 600]) == [
        leaf_hash(b""),
        leaf_hash(b"a"),
        leaf_hash(b"\x00" * 600),
    ]


def test_accumulator_restores_from_leaves_and_frontier() -> None:
    leaves = hashes(77)
    acc = MerkleAccumulator.from_leaf_hashes(leaves)
    again = MerkleAccumulator.from_frontier(acc.size, acc.frontier())
    assert len(acc.frontier()) == bin(77).count("1")
    assert again.root() == acc.root() == root(leaves)
    extra = leaf_hash(b"next")
    acc.append(extra)
    again.append(extra)
    assert again.root() == acc.root() == root([*leaves, extra])
    with pytest.raises(MerkleRangeError, match="frontier"):
        MerkleAccumulator.from_frontier(5, acc.frontier()[:1])
    with pytest.raises(MerkleRangeError, match="32 bytes"):
        acc.append(b"short")


@st.composite
def tree_and_leaf(draw: st.DrawFn, min_size: int, max_size: int) -> tuple[list[bytes], int]:
    """The leaf hashes of a tree of `min_size` to `max_size` leaves, and an index into them."""
    size = draw(st.integers(min_value=min_size, max_value=max_size))
    return hashes(size), draw(st.integers(min_value=0, max_value=size - 1))


@st.composite
def tree_and_prefix(draw: st.DrawFn, min_new: int, max_new: int, proper: bool) -> tuple[list[bytes], int]:
    """The leaf hashes of a tree of `min_new` to `max_new` leaves, and the size of an older tree
    (a prefix of it; `proper`: neither empty nor the whole)."""
    new = draw(st.integers(min_value=min_new, max_value=max_new))
    return hashes(new), draw(st.integers(min_value=int(proper), max_value=new - int(proper)))


@settings(max_examples=150, deadline=None)
@given(tree_and_leaf(1, 300))
def test_every_inclusion_proof_verifies(tree: tuple[list[bytes], int]) -> None:
    leaves, index = tree
    size = len(leaves)
    r = root(leaves)
    verify_inclusion(leaves[index], index, size, inclusion_proof(index, leaves), r)


@pytest.mark.parametrize("size", range(1, 34))
def test_inclusion_exhaustive_small_trees(size: int) -> None:
    leaves = hashes(size)
    r = root(leaves)
    for i in range(size):
        verify_inclusion(leaves[i], i, size, inclusion_proof(i, leaves), r)


@settings(max_examples=150, deadline=None)
@given(tree_and_prefix(0, 300, proper=False))
def test_every_consistency_proof_verifies(tree: tuple[list[bytes], int]) -> None:
    leaves, old = tree
    new = len(leaves)
    proof = consistency_proof(old, new, leaves)
    verify_consistency(old, new, root(leaves[:old]), root(leaves), proof)


@pytest.mark.parametrize("new", range(0, 34))
def test_consistency_exhaustive_small_trees(new: int) -> None:
    leaves = hashes(new)
    for old in range(new + 1):
        proof = consistency_proof(old, new, leaves)
        verify_consistency(old, new, root(leaves[:old]), root(leaves), proof)


@settings(max_examples=150, deadline=None)
@given(tree_and_leaf(2, 200), st.data())
def test_inclusion_proof_for_wrong_leaf_index_or_size_fails(
    tree: tuple[list[bytes], int], data: st.DataObject
) -> None:
    leaves, index = tree
    size = len(leaves)
    r = root(leaves)
    proof = inclusion_proof(index, leaves)
    other = data.draw(st.integers(min_value=0, max_value=size - 1).filter(lambda i: i != index))
    with pytest.raises(InclusionProofError):
        verify_inclusion(leaves[other], index, size, proof, r)
    with pytest.raises(InclusionProofError):
        verify_inclusion(leaf_hash(b"forged"), index, size, proof, r)
    with pytest.raises(InclusionProofError):
        verify_inclusion(leaves[index], other, size, proof, r)
    bad_size = data.draw(st.integers(min_value=index + 1, max_value=400).filter(lambda s: s != size))
    # The size is bound by the root: a proof for one size never verifies against another's.
    with pytest.raises(InclusionProofError):
        verify_inclusion(leaves[index], index, bad_size, proof, root(hashes(bad_size)))
    with pytest.raises(InclusionProofError):
        verify_inclusion(leaves[index], index, size, proof, root(leaves[:-1]))
    if proof:
        flipped = [bytes([proof[0][0] ^ 1]) + proof[0][1:], *proof[1:]]
        with pytest.raises(InclusionProofError):
            verify_inclusion(leaves[index], index, size, flipped, r)


@settings(max_examples=150, deadline=None)
@given(tree_and_prefix(2, 200, proper=True), st.data())
def test_consistency_proof_for_wrong_size_or_root_fails(
    tree: tuple[list[bytes], int], data: st.DataObject
) -> None:
    leaves, old = tree
    new = len(leaves)
    proof = consistency_proof(old, new, leaves)
    old_root, new_root = root(leaves[:old]), root(leaves)
    forged = [*leaves[: old - 1], leaf_hash(b"rewritten"), *leaves[old:]]
    with pytest.raises(ConsistencyProofError):
        verify_consistency(old, new, root(forged[:old]), new_root, proof)
    with pytest.raises(ConsistencyProofError):
        verify_consistency(old, new, old_root, root(forged), proof)
    wrong_old = data.draw(st.integers(min_value=1, max_value=new - 1).filter(lambda m: m != old))
    with pytest.raises(ConsistencyProofError):
        verify_consistency(wrong_old, new, old_root, new_root, proof)
    with pytest.raises(ConsistencyProofError):
        verify_consistency(old, new + 1, old_root, root(hashes(new + 1)), proof)
    with pytest.raises(ConsistencyProofError):
        verify_consistency(new, old, new_root, old_root, proof)


def test_consistency_equal_sizes_and_fork() -> None:
    leaves = hashes(5)
    verify_consistency(5, 5, root(leaves), root(leaves), [])
    with pytest.raises(ConsistencyProofError, match="forked"):
        verify_consistency(5, 5, root(leaves), root(hashes(6)[1:]), [])


def test_proof_generation_rejects_out_of_range() -> None:
    leaves = hashes(4)
    with pytest.raises(MerkleRangeError):
        inclusion_proof(4, leaves)
    with pytest.raises(MerkleRangeError):
        consistency_proof(3, 5, leaves)
    with pytest.raises(MerkleRangeError):
        consistency_proof(4, 3, leaves)


# ---------------------------------------------------------------- entries and checkpoints

ORIGIN = "holdfast.example/site-01/purge-log"
KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
PUB = KEY.public_key()


def test_canonical_json_is_stable() -> None:
    assert canonical_json({"b": 1, "a": "ä", "c": [1, {"z": None, "y": True}]}) == (
        '{"a":"ä","b":1,"c":[1,{"y":true,"z":null}]}'.encode()
    )
    with pytest.raises(EntryFormatError):
        canonical_json({"x": float("nan")})


def test_make_entry_chains_and_guards() -> None:
    e0 = make_entry(0, None, {"segment": "a"})
    assert json.loads(e0) == {"seq": 0, "prev": GENESIS_PREV, "segment": "a"}
    e1 = make_entry(1, leaf_hash(e0), {"segment": "b"})
    assert json.loads(e1)["prev"] == leaf_hash(e0).hex()
    with pytest.raises(EntryFormatError, match="reserved"):
        make_entry(1, leaf_hash(e0), {"seq": 5})
    with pytest.raises(EntryFormatError, match="leaf hash of entry 0"):
        make_entry(1, None, {})
    with pytest.raises(EntryFormatError):
        make_entry(-1, None, {})


def test_checkpoint_sign_verify_and_roundtrip() -> None:
    r = root(hashes(3))
    cp = sign_checkpoint(KEY, ORIGIN, 3, r, "2026-05-01T12:00:00Z")
    assert (
        cp.key_id
        == key_id(PUB).hex()
        == hashlib.sha256(PUB.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw))
        .digest()[:8]
        .hex()
    )

    assert cp.body() == f"{ORIGIN}\n3\n{base64.b64encode(r).decode()}\n2026-05-01T12:00:00Z\n".encode()
    verify_checkpoint(cp, PUB)
    again = Checkpoint.from_dict(json.loads(json.dumps(cp.to_dict())))
    assert again == cp
    verify_checkpoint(again, PUB)
    for altered in (
        replace(cp, size=4),
        replace(cp, root=root(hashes(4))),
        replace(cp, time="2026-05-01T12:00:01Z"),
        replace(cp, origin="other"),
        replace(cp, signature=bytes(64)),
    ):
        with pytest.raises(CheckpointSignatureError):
            verify_checkpoint(altered, PUB)
    other = Ed25519PrivateKey.generate().public_key()
    with pytest.raises(CheckpointSignatureError, match="verifying key"):
        verify_checkpoint(cp, other)
    with pytest.raises(CheckpointFormatError, match="UTC"):
        sign_checkpoint(KEY, ORIGIN, 3, r, "2026-05-01T12:00:00+02:00")
    with pytest.raises(CheckpointFormatError):
        sign_checkpoint(KEY, "two\nlines", 3, r, "2026-05-01T12:00:00Z")
    with pytest.raises(CheckpointFormatError, match="'root'"):
        Checkpoint.from_dict({**cp.to_dict(), "root": "not base64!"})


def test_load_public_key_formats() -> None:
    raw = PUB.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    pem = PUB.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    assert key_id(load_public_key(raw)) == key_id(load_public_key(pem)) == key_id(PUB)
    with pytest.raises(CheckpointFormatError):
        load_public_key(b"garbage that is not a key")


# ---------------------------------------------------------------- verify_log


def build_log(n: int, cp_sizes: Sequence[int]) -> tuple[list[bytes], list[Checkpoint]]:
    """A log of n entries as the appliance writes it, with checkpoints at cp_sizes."""
    entries: list[bytes] = []
    acc = MerkleAccumulator()
    checkpoints: list[Checkpoint] = []
    wanted = sorted(cp_sizes)
    prev: bytes | None = None
    for i in range(n):
        e = make_entry(i, prev, {"segment": f"cam03/{i:06d}.hfs", "reason": "retention"})
        prev = acc.append_data(e)
        entries.append(e)
        while wanted and wanted[0] == acc.size:
            wanted.pop(0)
            checkpoints.append(
                sign_checkpoint(
                    KEY, ORIGIN, acc.size, acc.root(), f"2026-05-01T12:{len(checkpoints):02d}:00Z"
                )
            )
    return entries, checkpoints


def entry_kinds(report: object) -> list[tuple[str, int | None]]:
    return [(p.kind, p.entry_index) for p in report.problems]  # type: ignore[attr-defined]


def test_untouched_log_verifies() -> None:
    entries, cps = build_log(20, [5, 12, 20])
    report = verify_log(entries, cps, PUB)
    assert report.ok, report.summary()
    assert report.problems == []
    assert report.verified_size == 20
    assert report.unsealed_from is None


def test_unsealed_tail_is_stated_not_an_error() -> None:
    entries, cps = build_log(20, [5, 12])
    report = verify_log(entries, cps, PUB)
    assert report.ok
    assert report.unsealed_from == 12
    assert any("12..19" in n and "unsealed" in n for n in report.notes)


def test_empty_log_and_unsigned_log() -> None:
    assert verify_log([], [], PUB).ok
    entries, _ = build_log(3, [])
    report = verify_log(entries, [], PUB)
    assert not report.ok
    assert report.problems[0].kind == "unsigned"


N = 20
CPS = [5, 12, 20]
POSITIONS = [0, 1, 4, 5, 11, 12, 13, 18]


def _single_entry_problem(report: object) -> tuple[str, int | None]:
    kinds = entry_kinds(report)
    assert len(kinds) == 1, report.summary()  # type: ignore[attr-defined]
    return kinds[0]


@pytest.mark.parametrize("k", [*POSITIONS, N - 1])
def test_changed_entry_is_pinpointed(k: int) -> None:
    entries, cps = build_log(N, CPS)
    obj = json.loads(entries[k])
    obj["reason"] = "disk pressure"
    entries[k] = canonical_json(obj)
    report = verify_log(entries, cps, PUB)
    assert not report.ok
    assert _single_entry_problem(report) == ("entry_changed", k)
    assert report.first_bad_entry == k
    assert f"entry {k} was changed" in report.problems[0].message


@pytest.mark.parametrize("k", POSITIONS)
def test_changed_entry_in_unsealed_tail_is_pinpointed_by_chain(k: int) -> None:
    entries, cps = build_log(N, [3])
    entries[k] = entries[k].replace(b"retention", b"retentioN")
    report = verify_log(entries, cps, PUB)
    assert report.first_bad_entry == k, report.summary()


@pytest.mark.parametrize("k", [*POSITIONS, N - 1])
def test_removed_entry_is_pinpointed(k: int) -> None:
    entries, cps = build_log(N, CPS)
    del entries[k]
    report = verify_log(entries, cps, PUB)
    kind, index = _single_entry_problem(report)
    assert index == k
    assert kind == ("entries_truncated" if k == N - 1 else "entry_removed")


def test_removed_run_of_entries_is_pinpointed() -> None:
    entries, cps = build_log(N, CPS)
    del entries[6:9]
    report = verify_log(entries, cps, PUB)
    assert _single_entry_problem(report) == ("entry_removed", 6)
    assert "entries 6..8 are missing" in report.problems[0].message


@pytest.mark.parametrize("k", [*POSITIONS, N - 2])
def test_swapped_entries_are_pinpointed(k: int) -> None:
    entries, cps = build_log(N, CPS)
    entries[k], entries[k + 1] = entries[k + 1], entries[k]
    report = verify_log(entries, cps, PUB)
    assert _single_entry_problem(report) == ("entries_reordered", k)


@pytest.mark.parametrize("k", [*POSITIONS, N])
@pytest.mark.parametrize("forge", ["naive", "copied_seq", "chained"])
def test_inserted_entry_is_pinpointed(k: int, forge: str) -> None:
    entries, cps = build_log(N, CPS)
    if forge == "naive":
        fake = canonical_json({"segment": "cam03/fake.hfs", "reason": "retention"})
    else:
        prev = leaf_hash(entries[k - 1]) if k else None
        fake = make_entry(k, prev, {"segment": "cam03/fake.hfs", "reason": "retention"})
        if forge == "copied_seq":
            fake = fake.replace(b"fake", b"fak3")
    entries.insert(k, fake)
    report = verify_log(entries, cps, PUB)
    if k == N:
        # Appending after the last checkpoint is indistinguishable from a genuine new entry,
        # unless it breaks seq or chain; it is at least reported as unsealed.
        assert report.unsealed_from == N
        if forge == "naive":
            assert report.first_bad_entry == N
        return
    assert _single_entry_problem(report) == ("entry_inserted", k), report.summary()


def test_rewritten_chain_is_narrowed_to_checkpoint_range() -> None:
    entries, cps = build_log(N, CPS)
    # An insider rewrites entry 7 and recomputes seq/prev for everything after it.
    acc = MerkleAccumulator.from_leaf_hashes([leaf_hash(e) for e in entries[:7]])
    prev = leaf_hash(entries[6])
    for i in range(7, N):
        obj = json.loads(entries[i])
        if i == 7:
            obj["reason"] = "forged"
        obj["prev"] = prev.hex()
        entries[i] = canonical_json(obj)
        prev = acc.append_data(entries[i])
    report = verify_log(entries, cps, PUB)
    assert not report.ok
    assert entry_kinds(report) == [("entries_rewritten", 5)]
    assert "5..11" in report.problems[0].message


@pytest.mark.parametrize("ci", [0, 1, 2])
@pytest.mark.parametrize("field", ["root", "size", "time", "signature", "origin"])
def test_altered_checkpoint_is_pinpointed(ci: int, field: str) -> None:
    entries, cps = build_log(N, CPS)
    cp = cps[ci]
    altered = {
        "root": replace(cp, root=hashlib.sha256(b"x").digest()),
        "size": replace(cp, size=cp.size - 1),
        "time": replace(cp, time="2020-01-01T00:00:00Z"),
        "signature": replace(cp, signature=bytes([cp.signature[0] ^ 1]) + cp.signature[1:]),
        "origin": replace(cp, origin="somewhere-else"),
    }[field]
    cps[ci] = altered
    report = verify_log(entries, cps, PUB)
    assert not report.ok
    assert [(p.kind, p.checkpoint_index) for p in report.problems] == [("checkpoint_signature", ci)]
    assert report.bad_checkpoints == [ci]
    assert report.first_bad_entry is None


def test_checkpoint_from_another_key_is_pinpointed() -> None:
    entries, cps = build_log(N, CPS)
    intruder = Ed25519PrivateKey.generate()
    cps[1] = sign_checkpoint(intruder, ORIGIN, cps[1].size, cps[1].root, cps[1].time)
    report = verify_log(entries, cps, PUB)
    assert [(p.kind, p.checkpoint_index) for p in report.problems] == [("checkpoint_signature", 1)]
    assert "verifying key" in report.problems[0].message


def test_forked_checkpoint_signed_with_the_key_is_inconsistent() -> None:
    entries, cps = build_log(N, CPS)
    cps[0] = sign_checkpoint(KEY, ORIGIN, 5, root(hashes(5)), cps[0].time)
    report = verify_log(entries, cps, PUB)
    assert [(p.kind, p.checkpoint_index) for p in report.problems] == [("checkpoint_inconsistent", 0)]
    assert report.verified_size == N


def test_checkpoints_out_of_order_are_pinpointed() -> None:
    entries, cps = build_log(N, CPS)
    cps = [cps[0], cps[2], cps[1]]
    report = verify_log(entries, cps, PUB)
    assert [(p.kind, p.checkpoint_index) for p in report.problems][0] == ("checkpoint_order", 2)


def test_truncated_export_is_pinpointed() -> None:
    entries, cps = build_log(N, CPS)
    report = verify_log(entries[:15], cps, PUB)
    assert _single_entry_problem(report) == ("entries_truncated", 15)
    assert "15..19" in report.problems[0].message


def test_malformed_entry_is_pinpointed() -> None:
    entries, cps = build_log(N, CPS)
    entries[9] = b"{not json"
    report = verify_log(entries, cps, PUB)
    assert report.first_bad_entry == 9


# ---------------------------------------------------------------- export


def test_export_roundtrip_and_tamper_via_files(tmp_path: Path) -> None:
    entries, cps = build_log(N, CPS)
    write_export(tmp_path / "exp", entries, cps)
    got_entries, got_cps = read_export(tmp_path / "exp")
    assert got_entries == entries and got_cps == cps
    assert verify_log(got_entries, got_cps, PUB).ok

    lines = (tmp_path / "exp" / "entries.jsonl").read_bytes().split(b"\n")
    lines[3], lines[4] = lines[4], lines[3]
    (tmp_path / "exp" / "entries.jsonl").write_bytes(b"\n".join(lines))
    report = verify_log(*read_export(tmp_path / "exp"), PUB)
    assert entry_kinds(report) == [("entries_reordered", 3)]


def test_export_errors_are_actionable(tmp_path: Path) -> None:
    with pytest.raises(ExportFormatError, match="entries.jsonl"):
        read_export(tmp_path)
    with pytest.raises(ExportFormatError, match="single-line"):
        write_export(tmp_path, [b"a\nb"], [])
    entries, cps = build_log(3, [3])
    write_export(tmp_path, entries, cps)
    (tmp_path / "checkpoints.jsonl").write_text('{"origin": 1}\n')
    with pytest.raises(ExportFormatError, match="line 1"):
        read_export(tmp_path)


# ---------------------------------------------------------------- scale


def test_scale_100k_entries_accumulate_and_verify() -> None:
    n = 100_000
    entries, cps = build_log(n, [25_000, 50_000, 99_999, n])
    report = verify_log(entries, cps, PUB)
    assert report.ok, report.summary()
    entries[77_777] = entries[77_777].replace(b"retention", b"retentiom")
    report = verify_log(entries, cps, PUB)
    assert _single_entry_problem(report) == ("entry_changed", 77_777)
