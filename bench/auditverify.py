"""Benchmark `holdfast audit verify` on a large export, beside `sha256sum` of the same files.

    PYTHONPATH=. python bench/auditverify.py [--entries 1000000] [--dir DIR]

Writes an export of N purge-log entries shaped like real ones (about 500 bytes each, a signed
checkpoint every 500 entries, a consistency proof from each, a signed note) plus an empty access
log, then times, each as a separate process measured by wall clock and peak RSS (GNU time):

1. baseline: `sha256sum` over entries.jsonl and checkpoints.jsonl (reads and hashes every byte);
2. `holdfast audit verify DIR --pubkey sign.pub` (the whole command, start-up included);
3. `holdfast audit verify DIR --pubkey sign.pub --since CHECKPOINT` from the checkpoint at 99 %.

Generating the export is not timed.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from cryptography.hazmat.primitives import serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey  # noqa: E402

from bench.common import purge_fields  # noqa: E402
from vault.ledger import entries  # noqa: E402

ORIGIN = "holdfast/demo/purge-log"


def build(d: Path, m: int) -> tuple[Path, Path]:
    """The export directory and the sign.pub beside it; returns (export, pubkey file)."""
    key = Ed25519PrivateKey.generate()
    pub = key.public_key()
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    log = d / "export" / "purge-log"
    log.mkdir(parents=True)
    leaves = bytearray()
    cps: list[entries.Checkpoint] = []
    acc = entries.MerkleAccumulator()
    prev: bytes | None = None
    with open(log / entries.ENTRIES_FILE, "wb") as f:
        for i in range(m):
            s = t0 + timedelta(seconds=10 * i)
            e = entries.make_entry(
                i,
                prev,
                purge_fields(i, t0),
            )
            f.write(e + b"\n")
            prev = acc.append_data(e)
            leaves += prev
            if (i + 1) % 500 == 0 or i == m - 1:
                cps.append(entries.sign_checkpoint(key, ORIGIN, acc.size, acc.root(), s))
    (log / entries.CHECKPOINTS_FILE).write_bytes(
        b"".join(entries.canonical_json(c.to_dict()) + b"\n" for c in cps)
    )
    levels = entries.MerkleLevels(leaves)
    (log / entries.CONSISTENCY_FILE).write_bytes(entries.consistency_lines(levels, [c.size for c in cps], m))
    (log / entries.NOTE_FILE).write_bytes(entries.checkpoint_note(cps[-1], pub))
    since = cps[int(len(cps) * 0.99) - 1]
    (d / "since.note").write_bytes(entries.checkpoint_note(since, pub))
    acc_dir = d / "export" / "access-log"
    acc_dir.mkdir()
    (acc_dir / entries.ENTRIES_FILE).write_bytes(b"")
    empty = entries.sign_checkpoint(key, "holdfast/demo/access-log", 0, entries.EMPTY_ROOT, t0)
    (acc_dir / entries.CHECKPOINTS_FILE).write_bytes(entries.canonical_json(empty.to_dict()) + b"\n")
    logs = [{"log": "purge", "origin": ORIGIN}, {"log": "access", "origin": "holdfast/demo/access-log"}]
    (d / "export" / "manifest.json").write_text(json.dumps({"summary": logs}))
    pem = pub.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    (d / "sign.pub").write_bytes(pem)
    return d / "export", d / "sign.pub"


def timed(cmd: list[str], scratch: Path) -> tuple[float, float, float, int]:
    """Wall seconds, CPU seconds (user + system), peak RSS in MiB (GNU time's %M: the command's
    own, not inherited), exit status. On a shared machine the CPU seconds are the steadier figure."""
    out = scratch / "time.txt"
    t = time.perf_counter()
    p = subprocess.run(
        ["/usr/bin/time", "-o", str(out), "-f", "%U %S %M", *cmd],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    secs = time.perf_counter() - t
    user, system, rss = out.read_text().split()[-3:]
    return secs, float(user) + float(system), int(rss) / 1024, p.returncode


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--entries", type=int, default=1_000_000)
    ap.add_argument("--dir", type=Path, help="where to write the export (default: a temp dir in the repo)")
    ap.add_argument("--build-only", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.build_only:
        build(args.build_only, args.entries)
        return
    d = Path(tempfile.mkdtemp(prefix="bench-auditverify-", dir=args.dir or REPO))
    try:
        t = time.perf_counter()
        # Built in a child: this process stays small, so the timed children's peak RSS
        # (inherited across fork until exec) is theirs alone.
        subprocess.run(
            [sys.executable, __file__, "--entries", str(args.entries), "--build-only", str(d)], check=True
        )
        export, pub = d / "export", d / "sign.pub"
        log = export / "purge-log"
        mb = (log / entries.ENTRIES_FILE).stat().st_size / 2**20
        print(f"export of {args.entries} entries ({mb:.0f} MiB) written in {time.perf_counter() - t:.1f} s")
        holdfast = [sys.executable, "-m", "cli.main"]
        rows = [
            ("sha256sum entries + checkpoints (baseline)", ["sha256sum", str(log / entries.ENTRIES_FILE), str(log / entries.CHECKPOINTS_FILE)]),
            ("holdfast audit verify", [*holdfast, "audit", "verify", str(export), "--pubkey", str(pub)]),
            ("holdfast audit verify --since (99 %)", [*holdfast, "audit", "verify", str(export), "--pubkey", str(pub), "--since", str(d / "since.note")]),
            ("python start-up (holdfast --help)", [*holdfast, "--help"]),
        ]  # fmt: skip
        print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        print(f"{'command':45} {'wall s':>8} {'CPU s':>7} {'peak MiB':>9} {'exit':>5}")
        for name, cmd in rows:
            secs, cpu, rss, rc = timed(cmd, d)
            print(f"{name:45} {secs:8.2f} {cpu:7.2f} {rss:9.0f} {rc:5d}")
        print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    finally:
        shutil.rmtree(d)


if __name__ == "__main__":
    main()
