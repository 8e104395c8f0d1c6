"""Checkpoints as C2SP signed notes, RFC 9162 proofs, `audit verify --since`: checked with tools
Holdfast did not write (pymerkle's RFC 6962 tree, openssl) and the signed-note spec's vectors."""

from __future__ import annotations

import base64
import json
import os
import pty
import re
import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pymerkle import InclusionProof, InmemoryTree, verify_consistency

from tests.support.appliance import HOLDFAST, Appliance
from tests.support.retention import Clock, make_segments, set_purge
from vault.ledger import entries as tlog
from vault.ledger import note, streamverify, verify
from vault.retention.purge import Purger
from vault.vault import Vault

T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)

# The example of Go's golang.org/x/mod/sumdb/note documentation (C2SP signed-note's origin).
GO_SKEY = "AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"  # 0x01 || Ed25519 seed
GO_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
GO_TEXT = (
    b"If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n"
)
GO_NOTE = (
    GO_TEXT
    + (
        "\n\u2014 PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"
    ).encode()
)


def test_signed_note_matches_the_reference_example_byte_for_byte() -> None:
    key = Ed25519PrivateKey.from_private_bytes(base64.b64decode(GO_SKEY)[1:])
    assert note.verifier_key("PeterNeumann", key.public_key()) == GO_VKEY
    assert note.sign(GO_TEXT, "PeterNeumann", key) == GO_NOTE
    v = note.parse_verifier_key(GO_VKEY)
    assert note.open_note(GO_NOTE, [v]) == (GO_TEXT, v)
    with pytest.raises(note.NoteError, match="altered"):
        note.open_note(GO_NOTE.replace(b"problem,", b"problem;"), [v])
    other = note.verifier("PeterNeumann", Ed25519PrivateKey.generate().public_key())
    with pytest.raises(note.NoteError, match="no signature on the note is from a trusted key"):
        note.open_note(GO_NOTE, [other])  # same name, other key: ignored, so nothing verifies
    with pytest.raises(note.NoteError):
        note.parse(GO_TEXT)  # no signatures
    with pytest.raises(note.NoteError, match="control character"):
        note.parse(GO_NOTE.replace(b"If", b"I\tf"))


@pytest.fixture
def site(appliance: Appliance) -> tuple[Appliance, Vault]:
    set_purge(appliance, require_clock_sync=False)
    clock = Clock(T0)
    v = Vault(appliance.cfg, clock=clock)
    v.migrate()
    make_segments(v, "office-1", T0 - timedelta(days=30), 13)
    Purger(v, batch_size=5).run()  # 3 batches: checkpoints at 5, 10, 13 entries
    return appliance, v


def _entries(d: Path) -> list[bytes]:
    return (d / "purge-log" / tlog.ENTRIES_FILE).read_bytes().splitlines()


def _tree(entries: list[bytes]) -> InmemoryTree:
    t = InmemoryTree(algorithm="sha256")  # RFC 6962 hashing: 0x00 leaf and 0x01 node prefixes
    for e in entries:
        t.append_entry(e)
    return t


def _rfc_consistency_ranges(m: int, n: int) -> list[tuple[int, int]]:
    """The leaf ranges of PROOF(m, D[n]), RFC 9162 2.1.4.1, written from the RFC's definition."""

    def subproof(m: int, lo: int, hi: int, b: bool) -> list[tuple[int, int]]:
        size = hi - lo
        if m == size:
            return [] if b else [(lo, hi)]
        k = 1
        while k * 2 < size:
            k *= 2
        if m <= k:
            return subproof(m, lo, lo + k, b) + [(lo + k, hi)]
        return subproof(m - k, lo + k, hi, False) + [(lo, lo + k)]

    return subproof(m, 0, n, True)


def test_checkpoint_note_roots_and_proofs_check_out_with_outside_tools(
    site: tuple[Appliance, Vault], tmp_path: Path
) -> None:
    app, v = site
    d = tmp_path / "export"
    out = app.cli("audit", "export", str(d)).stdout.decode()
    vkeys = app.cli("keys", "verifier").stdout.decode().split()
    assert vkeys[0] in out and vkeys[0].startswith("holdfast/demo/purge-log+")
    entries = _entries(d)
    assert len(entries) == 13

    # The note: tlog-checkpoint body, signature by the published verifier key.
    raw = (d / "purge-log" / tlog.NOTE_FILE).read_bytes()
    text, ver = note.open_note(raw, [note.parse_verifier_key(k) for k in vkeys])
    origin, size, root_b64, time = text.decode().splitlines()
    assert (origin, size) == ("holdfast/demo/purge-log", "13") and ver.name == origin
    assert time.endswith("Z")

    # pymerkle (an RFC 6962 implementation we did not write) reproduces every signed root.
    tree = _tree(entries)
    assert base64.b64decode(root_b64) == tree.get_root(13)
    cps = [json.loads(x) for x in (d / "purge-log" / tlog.CHECKPOINTS_FILE).read_text().splitlines()]
    assert [c["size"] for c in cps] == [5, 10, 13]
    for c in cps:
        assert base64.b64decode(c["root"]) == tree.get_root(c["size"])

    # openssl verifies the note's Ed25519 signature over the note text (key ID stripped).
    sig_line = raw.decode().rsplit("\n\n", 1)[1]
    sig = base64.b64decode(sig_line.split(" ")[2])
    assert sig[:4] == ver.key_id
    (tmp_path / "text").write_bytes(text)
    (tmp_path / "sig").write_bytes(sig[4:])
    pub = str(app.cfg.keys.dir / "sign.pub")

    def openssl(textfile: str) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            ["openssl", "pkeyutl", "-verify", "-pubin", "-inkey", pub, "-rawin", "-in", textfile,
             "-sigfile", str(tmp_path / "sig")],
            capture_output=True,
        )  # fmt: skip

    r = openssl(str(tmp_path / "text"))
    assert r.returncode == 0 and b"Signature Verified Successfully" in r.stdout, r.stdout + r.stderr
    (tmp_path / "forged").write_bytes(text.replace(b"\n13\n", b"\n12\n"))
    assert openssl(str(tmp_path / "forged")).returncode != 0

    # Consistency proofs from each earlier checkpoint: their nodes are the RFC's subtree roots
    # (each computed by pymerkle over that range), and they verify with our RFC 9162 verifier.
    proofs = [json.loads(x) for x in (d / "purge-log" / tlog.CONSISTENCY_FILE).read_text().splitlines()]
    assert [(p["old_size"], p["new_size"]) for p in proofs] == [(5, 13), (10, 13)]
    for p in proofs:
        m, n = p["old_size"], p["new_size"]
        hashes = [base64.b64decode(h) for h in p["proof"]]
        want = [_tree(entries[a:b]).get_root() for a, b in _rfc_consistency_ranges(m, n)]
        assert hashes == want
        tlog.verify_consistency(m, n, tree.get_root(m), tree.get_root(n), hashes)
        verify_consistency(tree.get_root(m), tree.get_root(n), tree.prove_consistency(m, n))

    # `audit prove`: the exact hashed bytes and an RFC 9162 inclusion proof pymerkle accepts.
    seg = json.loads(entries[7])["segment"]
    proof = json.loads(app.cli("audit", "prove", seg).stdout)
    assert proof["entry"].encode() == entries[7]
    assert bytes.fromhex(proof["leaf_hash"]) == tlog.leaf_hash(entries[7])
    inc = proof["inclusion_proof"]
    assert (inc["tree_size"], inc["leaf_index"]) == (13, 7)
    path = [base64.b64decode(h) for h in inc["inclusion_path"]]
    theirs = tree.prove_inclusion(8, 13)  # pymerkle counts leaves from one
    ours = InclusionProof("sha256", True, 13, 8, theirs.rule, [tree.get_leaf(8), *path])
    ours.verify(tree.get_leaf(8), tree.get_root(13), index=8, size=13)
    assert proof["checkpoint_note"].encode() == raw


def test_verify_since_checks_only_what_is_new(site: tuple[Appliance, Vault], tmp_path: Path) -> None:
    app, v = site
    pub = str(app.cfg.keys.dir / "sign.pub")
    first, second = tmp_path / "first", tmp_path / "second"
    app.cli("audit", "export", str(first))
    kept = tmp_path / "last-verified.note"
    shutil.copyfile(first / "purge-log" / tlog.NOTE_FILE, kept)

    make_segments(v, "office-1", T0 - timedelta(days=29), 9)
    Purger(v, batch_size=4).run()  # 13 -> 22 entries, checkpoints at 17, 21, 22
    app.cli("audit", "export", str(second))

    def since(export: Path, note_file: Path = kept) -> tuple[int, str]:
        r = app.cli("audit", "verify", str(export), "--pubkey", pub, "--since", str(note_file), check=False)
        return r.returncode, r.stdout.decode() + r.stderr.decode()

    rc, out = since(second)
    assert rc == 0 and "consistent with your checkpoint of size 13" in out and "entries 13..21" in out, out

    # Entries before the kept checkpoint are not read again: an edit there goes unnoticed here
    # (a full verify finds it), while an edit after it is found.
    entries_file = second / "purge-log" / tlog.ENTRIES_FILE
    original = entries_file.read_bytes()
    lines = original.splitlines(keepends=True)
    lines[3] = lines[3].replace(b'"expired"', b'"expirex"')
    entries_file.write_bytes(b"".join(lines))
    assert since(second)[0] == 0
    full = app.cli("audit", "verify", str(second), "--pubkey", pub, check=False)
    assert full.returncode == 1 and b"entry 3" in full.stdout
    lines = original.splitlines(keepends=True)
    lines[15] = lines[15].replace(b'"expired"', b'"expirex"')
    entries_file.write_bytes(b"".join(lines))
    rc, out = since(second)
    assert rc == 1 and "FAILED" in out, out
    entries_file.write_bytes(original)

    # A kept checkpoint whose size was edited no longer carries a valid signature.
    forged = tmp_path / "forged.note"
    forged.write_bytes(kept.read_bytes().replace(b"\n13\n", b"\n12\n", 1))
    rc, out = since(second, forged)
    assert rc == 1 and "does not verify" in out, out
    # A checkpoint from a log that forked (same key, other history) fails the consistency proof.
    key = v.sign_key
    fake = tlog.sign_checkpoint(key, "holdfast/demo/purge-log", 13, b"\x07" * 32, T0)
    forked = tmp_path / "forked.note"
    forked.write_bytes(tlog.checkpoint_note(fake, key.public_key()))
    rc, out = since(second, forked)
    assert rc == 1 and "consistency proof" in out, out


def test_verify_shows_progress_on_a_terminal_only(site: tuple[Appliance, Vault], tmp_path: Path) -> None:
    app, _v = site
    d = tmp_path / "export"
    app.cli("audit", "export", str(d))
    args = [*HOLDFAST, "audit", "verify", str(d), "--pubkey", str(app.cfg.keys.dir / "sign.pub")]
    piped = subprocess.run(args, env=app.env(), capture_output=True)
    assert piped.returncode == 0
    assert b"verify purge-log" not in piped.stderr and piped.stderr == b"", piped.stderr
    assert b"\x1b[" not in piped.stdout

    # The same command with stderr on a terminal draws the bar there.
    out, seen = _on_terminal(args, app.env())
    assert b"purge-log: OK" in out
    assert b"verify purge-log" in seen, seen[-500:]


def _on_terminal(args: list[str], env: dict[str, str]) -> tuple[bytes, bytes]:
    """Run with stderr on a pseudo-terminal; (stdout, what the terminal received)."""
    master, slave = pty.openpty()
    p = subprocess.Popen(args, env={**env, "TERM": "xterm"}, stdout=subprocess.PIPE, stderr=slave)
    os.close(slave)
    seen = b""
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        seen += chunk
    os.close(master)
    assert p.wait(timeout=120) == 0
    assert p.stdout is not None
    out = p.stdout.read()
    p.stdout.close()
    return out, seen


def test_migration_progress_on_a_terminal_only(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    piped = subprocess.run([*HOLDFAST, "init", str(tmp_path / "a")], env=env, capture_output=True)
    assert piped.returncode == 0 and piped.stderr == b"", piped.stderr
    _out, seen = _on_terminal([*HOLDFAST, "init", str(tmp_path / "b")], env)
    assert b"migrate the index" in seen and re.search(rb"(?<![0-9])([1-9][0-9]*)/\1(?![0-9])", seen), seen[
        -300:
    ]


@pytest.mark.parametrize("block", [61, 4096, 4 << 20])
def test_streaming_verify_any_block_size(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, block: int) -> None:
    """Entries split across read blocks, skipped blocks before --since: same verdicts."""
    monkeypatch.setattr(streamverify, "_BLOCK", block)
    key = Ed25519PrivateKey.generate()
    entries, cps, leaves = [], [], bytearray()
    acc = tlog.MerkleAccumulator()
    prev = None
    for i in range(300):
        e = tlog.make_entry(i, prev, {"n": i, "text": "x" * (i % 17)})
        entries.append(e)
        prev = acc.append_data(e)
        leaves += prev
        if (i + 1) % 40 == 0 or i == 299:
            cps.append(tlog.sign_checkpoint(key, "o/purge-log", acc.size, acc.root(), T0))
    d = tmp_path / "log"
    tlog.write_export(d, entries, cps)
    (d / tlog.CONSISTENCY_FILE).write_bytes(
        tlog.consistency_lines(tlog.MerkleLevels(leaves), [c.size for c in cps], 300)
    )
    rep = streamverify.verify_export_dir(d, key.public_key())
    assert rep.ok and rep.verified_size == 300 and rep.entry_count == 300
    old = cps[4]  # size 200
    assert streamverify.verify_since(d, old, key.public_key()).ok
    bad = list(entries)
    bad[250] = bad[250].replace(b'"n":250', b'"n":251')
    tlog.write_export(d, bad, cps)
    assert not streamverify.verify_since(d, old, key.public_key()).ok
    full = streamverify.verify_export_dir(d, key.public_key())
    assert not full.ok and full.first_bad_entry == 250


def _relink(entries: list[bytes], first: int) -> None:
    """Recompute prev from entry `first` on, as someone with write access could."""
    for k in range(first, len(entries)):
        obj = json.loads(entries[k])
        obj["prev"] = tlog.leaf_hash(entries[k - 1]).hex()
        entries[k] = tlog.canonical_json(obj)


@pytest.mark.parametrize(
    "tamper",
    ["seq_true", "seq_float", "prev_missing", "prev_upper", "not_object", "bad_json", "split_string"],
)
def test_streaming_verify_reports_what_verify_log_reports(tmp_path: Path, tamper: str) -> None:
    """An entry the block-wise checks must refuse, in the unsealed tail where no root covers it:
    the streaming verifier's report is verify_log's, never a clean one."""
    key = Ed25519PrivateKey.generate()
    entries: list[bytes] = []
    prev = None
    for i in range(20):
        entries.append(tlog.make_entry(i, prev, {"n": i}))
        prev = tlog.leaf_hash(entries[-1])
    cps = [tlog.sign_checkpoint(key, "o/purge-log", 1, tlog.root([tlog.leaf_hash(entries[0])]), T0)]
    k = 1  # in the unsealed tail; seq True equals 1 in Python, so only a type check refuses it
    obj = json.loads(entries[k])
    if tamper == "seq_true":
        entries[k] = entries[k].replace(b'"seq":1}', b'"seq":true}')
    elif tamper == "seq_float":
        entries[k] = entries[k].replace(b'"seq":1}', b'"seq":1.0}')
    elif tamper == "prev_missing":
        del obj["prev"]
        entries[k] = tlog.canonical_json(obj)
    elif tamper == "prev_upper":
        entries[k] = entries[k].replace(obj["prev"].encode(), obj["prev"].upper().encode())
    elif tamper == "not_object":
        entries[k] = b"[" + entries[k] + b"]"
    elif tamper == "bad_json":
        entries[k] = entries[k][:-1]
    else:  # two lines that only parse as one JSON value when joined with a comma
        entries[k : k + 2] = [b'{"a":"}', b'{","seq":1}']
    assert entries[k] != tlog.make_entry(k, tlog.leaf_hash(entries[0]), {"n": k})
    _relink(entries, k + 2 if tamper == "split_string" else k + 1)
    d = tmp_path / "log"
    tlog.write_export(d, entries, cps)
    streamed = streamverify.verify_export_dir(d, key.public_key())
    assert not streamed.ok
    assert streamed == verify.verify_log(*tlog.read_export(d), key.public_key())
