"""Benchmark the purger, the offline verifier and inclusion proofs, each beside a baseline.

    PYTHONPATH=. python bench/purge.py [--segments 100000] [--log-entries 1000000] [--dir /var/tmp]

1. Purge rate: N expired segments (real sealed blobs in a real store, indexed in SQLite) purged
   by `Purger.run()` (mark + shred, unlink, log entry, row delete, signed checkpoint per batch)
   against a bare loop of unlink + fsync(dir) over N files laid out the same way, same disk, same run.
2. Verify: `vault.ledger.verify` offline verification of an exported M-entry purge log (checkpoint every
   500 entries) against a bare SHA-256 pass over the same entries file.
3. Inclusion proof: size (bytes) and time to build and check one, at tree size M.

Setup (sealing, indexing) is not timed: blobs are sealed with the real SegmentWriter and their
envelopes detached as ingest does, but rows are bulk-inserted instead of going through the
spool one by one (that would measure ingest, not purge).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import insert

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import config as config_pkg  # noqa: E402
from bench.common import purge_fields, site  # noqa: E402
from vault.index.schema import Segment  # noqa: E402
from vault.ledger import entries as tlog  # noqa: E402
from vault.ledger import verify as tlogverify  # noqa: E402
from vault.retention.purge import Purger  # noqa: E402
from vault.sealed.seal import SegmentWriter, detach_envelope, read_header  # noqa: E402
from vault.store.ingest import Ingestor  # noqa: E402
from vault.store.spool import new_segment_id  # noqa: E402
from vault.timeutil import iso  # noqa: E402
from vault.vault import Vault  # noqa: E402

PER_DIR = 8640  # one camera-day of 10 s segments: the store's directory granularity


def populate(v: Vault, n: int, start: datetime) -> None:
    """n sealed 1 KiB segments of office-1, 10 s each, in the real store layout and index."""
    Ingestor(v)  # sources rows, migration
    payload = os.urandom(1024)
    rows = []
    for i in range(n):
        sid = new_segment_id()
        s = start + timedelta(seconds=10 * i)
        buf = io.BytesIO()
        w = SegmentWriter(
            buf, v.seal_public, {"id": sid, "source": "office-1", "kind": "video", "start": iso(s)}
        )
        w.write(payload)
        w.close({"end": iso(s + timedelta(seconds=10)), "duration": 10})
        buf.seek(0)
        key = v.store.key_for("office-1", s, sid)
        p = v.store.path(key)
        p.parent.mkdir(parents=True, exist_ok=True)
        with open(p, "wb") as out:
            _hdr, sha, stored = detach_envelope(buf, out)
        buf.seek(0)
        env = read_header(buf).envelope
        rows.append(
            {
                "id": sid,
                "source": "office-1",
                "kind": "video",
                "start": s,
                "end": s + timedelta(seconds=10),
                "duration": 10.0,
                "plaintext_bytes": len(payload),
                "stored_bytes": stored,
                "sha256": sha,
                "retention_class": "office-camera",
                "deadline": s + timedelta(seconds=10) + timedelta(days=14),
                "storage_key": key,
                "state": "stored",
                "key_id": "00",
                "envelope": env,
                "cut_short": False,
                "meta": {},
                "ingested_at": start + timedelta(days=1),
            }
        )
        if len(rows) == 5000:
            with v.sessions.begin() as sess:
                sess.execute(insert(Segment), rows)
            rows = []
    if rows:
        with v.sessions.begin() as sess:
            sess.execute(insert(Segment), rows)
    os.sync()


def bench_purge(base: Path, n: int, order: str) -> dict[str, float]:
    """Baseline files are created after the store is populated, so they are the warmer ones in the
    page/dentry cache: `--order purge-first` runs the purge first to show how much that matters."""
    cfg_path = site(base, clock_sync=False).config_path
    cfg = config_pkg.load(cfg_path)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    now = start + timedelta(days=60)
    v = Vault(cfg, clock=lambda: now)
    t = time.perf_counter()
    populate(v, n, start)
    setup = time.perf_counter() - t

    # baseline: same number of files, same directory fan-out, same filesystem
    bdir = base / "baseline"
    files = []
    for i in range(n):
        d = bdir / f"{i // PER_DIR:04d}"
        if i % PER_DIR == 0:
            d.mkdir(parents=True)
        f = d / f"{i:08d}"
        f.write_bytes(b"x" * 1200)
        files.append(f)
    os.sync()

    def baseline_loop() -> float:
        t = time.perf_counter()
        for f in files:
            f.unlink()
            fd = os.open(f.parent, os.O_RDONLY | os.O_DIRECTORY)
            os.fsync(fd)
            os.close(fd)
        return time.perf_counter() - t

    baseline = baseline_loop() if order == "baseline-first" else 0.0
    t = time.perf_counter()
    rep = Purger(v).run()
    purge = time.perf_counter() - t
    if order == "purge-first":
        baseline = baseline_loop()
    assert rep.purged["expired"] == n, rep.as_dict()
    v.close()
    return {"setup_s": setup, "baseline_s": baseline, "purge_s": purge, "checkpoints": rep.checkpoints}


def bench_verify(base: Path, m: int) -> dict[str, float]:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    entries: list[bytes] = []
    cps: list[tlog.Checkpoint] = []
    acc = tlog.MerkleAccumulator()
    prev: bytes | None = None
    t = time.perf_counter()
    for i in range(m):
        s = t0 + timedelta(seconds=10 * i)
        e = tlog.make_entry(
            i,
            prev,
            purge_fields(i, t0),
        )
        entries.append(e)
        prev = acc.append_data(e)
        if (i + 1) % 500 == 0 or i == m - 1:
            cps.append(tlog.sign_checkpoint(key, "holdfast/demo/purge-log", acc.size, acc.root(), s))
    gen = time.perf_counter() - t
    d = base / "export"
    tlog.write_export(d, entries, cps)
    size_mb = (d / tlog.ENTRIES_FILE).stat().st_size / 1e6
    del entries

    t = time.perf_counter()
    h = hashlib.sha256()
    with open(d / tlog.ENTRIES_FILE, "rb") as f:
        for line in f:
            h.update(line)
    baseline = time.perf_counter() - t

    t = time.perf_counter()
    ents, cp2 = tlog.read_export(d)
    rep = tlogverify.verify_log(ents, cp2, key.public_key())
    verify = time.perf_counter() - t
    assert rep.ok and rep.verified_size == m, rep.summary()

    leaves = [tlog.leaf_hash(e) for e in ents]
    t = time.perf_counter()
    idx = m // 3
    proof = tlog.inclusion_proof(idx, leaves)
    tlog.verify_inclusion(leaves[idx], idx, m, proof, acc.root())
    prove = time.perf_counter() - t
    return {
        "gen_s": gen,
        "entries_mb": size_mb,
        "checkpoints": len(cps),
        "sha256_baseline_s": baseline,
        "verify_s": verify,
        "proof_hashes": len(proof),
        "proof_bytes": 32 * len(proof),
        "prove_s": prove,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--segments", type=int, default=100_000)
    ap.add_argument("--log-entries", type=int, default=1_000_000)
    ap.add_argument("--order", choices=["baseline-first", "purge-first"], default="baseline-first")
    ap.add_argument("--dir", default="/var/tmp", help="a directory on the disk to measure (not tmpfs)")
    args = ap.parse_args()
    base = Path(tempfile.mkdtemp(prefix="holdfast-bench-", dir=args.dir))
    try:
        p = bench_purge(base / "purge", args.segments, args.order)
        n = args.segments
        print(f"purge of {n} expired segments (setup {p['setup_s']:.1f} s, not timed; order {args.order})")
        print(f"  bare unlink+fsync(dir) loop : {p['baseline_s']:8.2f} s  {n / p['baseline_s']:9.0f} files/s")
        print(
            f"  holdfast purge              : {p['purge_s']:8.2f} s  {n / p['purge_s']:9.0f} segments/s "
            f"({p['checkpoints']} signed checkpoints)"
        )
        print(f"  ratio purge/baseline        : {p['purge_s'] / p['baseline_s']:.2f}x the time")
        shutil.rmtree(base / "purge", ignore_errors=True)
        r = bench_verify(base / "verify", args.log_entries)
        m = args.log_entries
        print(f"verify of a {m}-entry purge log ({r['entries_mb']:.0f} MB, {r['checkpoints']} checkpoints)")
        print(f"  bare SHA-256 over the file  : {r['sha256_baseline_s']:8.2f} s")
        print(f"  holdfast audit verify (tlog): {r['verify_s']:8.2f} s  {m / r['verify_s']:9.0f} entries/s")
        print(
            f"inclusion proof at size {m}: {r['proof_hashes']} hashes = {r['proof_bytes']} bytes, "
            f"built and checked in {r['prove_s'] * 1000:.0f} ms (from {m} leaf hashes)"
        )
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
