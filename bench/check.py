"""Benchmark `holdfast check` (quick form) on a large index, beside a bare walk of the same store.

    PYTHONPATH=. python bench/check.py [--segments 1000000] [--sources 16] [--dir /var/tmp]

Setup (not timed): a `holdfast init` appliance on SQLite; N rows bulk-inserted into `segments`
(10 s apart, spread over S cameras, so 8,640 a camera-day directory as in the real layout), and
for each row an EMPTY blob file at its storage key (stored_bytes = 0). The quick check never
reads blob contents, only names and sizes, so empty files measure the same work as real ones
(list, stat, compare) while keeping the setup to minutes; `--deep` reads every byte and is not
what this measures.

Timed, each as its own process (wall time, and peak RSS as VmHWM at its exit):
1. baseline: `os.walk` of the store + `os.stat` of every file, nothing else;
2. `holdfast check --json` (index streamed sorted by storage key, merged with the store listing,
   logs and spool checked), which must report no problem.
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

from sqlalchemy import insert  # noqa: E402

import config as config_pkg  # noqa: E402
from bench.common import site  # noqa: E402
from vault.index.schema import Segment  # noqa: E402
from vault.store.ingest import Ingestor  # noqa: E402
from vault.store.spool import new_segment_id  # noqa: E402
from vault.vault import Vault  # noqa: E402

#: Peak RSS of the process itself: VmHWM belongs to the process's own address space, unlike
#: ru_maxrss, which a child inherits from the (large) parent it was forked from.
HWM = """
def _hwm():
    import sys
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            print("peak_kib", line.split()[1], file=sys.stderr)
"""

WALK = (
    HWM
    + """
import os, sys
n = 0
for d, _dirs, files in os.walk(sys.argv[1]):
    for f in files:
        os.stat(os.path.join(d, f))
        n += 1
print(n)
_hwm()
"""
)

CHECK = (
    HWM
    + """
import runpy, sys
sys.argv = ["holdfast", "check", "--json"]
try:
    runpy.run_module("cli.main", run_name="__main__")
except SystemExit as e:
    _hwm()
    raise
"""
)


def populate(v: Vault, n: int, sources: list[str], start: datetime) -> None:
    Ingestor(v)  # migration, sources rows
    per_source = -(-n // len(sources))
    batch: list[dict[str, object]] = []
    made_dirs: set[Path] = set()
    now = datetime.now(UTC)
    done = 0
    for src in sources:
        for i in range(per_source):
            if done == n:
                break
            sid = new_segment_id()
            s = start + timedelta(seconds=10 * i)
            key = v.store.key_for(src, s, sid)
            p = v.store.path(key)
            if p.parent not in made_dirs:
                p.parent.mkdir(parents=True, exist_ok=True)
                made_dirs.add(p.parent)
            os.close(os.open(p, os.O_CREAT | os.O_WRONLY, 0o640))
            batch.append(
                {
                    "id": sid,
                    "source": src,
                    "kind": "video",
                    "start": s,
                    "end": s + timedelta(seconds=10),
                    "duration": 10.0,
                    "plaintext_bytes": 0,
                    "stored_bytes": 0,
                    "sha256": "0" * 64,
                    "retention_class": "office-camera",
                    "deadline": now + timedelta(days=30),
                    "storage_key": key,
                    "state": "stored",
                    "key_id": "0" * 16,
                    "envelope": None,
                    "cut_short": False,
                    "meta": {},
                    "ingested_at": now,
                }
            )
            done += 1
            if len(batch) == 50_000:
                with v.sessions.begin() as sess:
                    sess.execute(insert(Segment), batch)
                batch.clear()
    if batch:
        with v.sessions.begin() as sess:
            sess.execute(insert(Segment), batch)


def measure(cmd: list[str], env: dict[str, str]) -> tuple[float, float, str]:
    """Run cmd as a child: wall time, its own peak RSS (VmHWM, MiB) and its stdout."""
    t0 = time.perf_counter()
    p = subprocess.run(cmd, env=env, capture_output=True)
    wall = time.perf_counter() - t0
    if p.returncode not in (0, 1):
        raise SystemExit(f"{cmd} exited {p.returncode}: {p.stderr.decode()[-2000:]}")
    peak = [int(ln.split()[1]) for ln in p.stderr.decode().splitlines() if ln.startswith("peak_kib ")]
    return wall, peak[-1] / 1024, p.stdout.decode()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--segments", type=int, default=1_000_000)
    ap.add_argument("--sources", type=int, default=16)
    ap.add_argument(
        "--dir", type=Path, default=None, help="where to build the appliance (default: a temp dir)"
    )
    ap.add_argument("--repeat", type=int, default=2, help="alternate baseline and check this many times")
    args = ap.parse_args()
    base = Path(tempfile.mkdtemp(prefix="holdfast-bench-check-", dir=args.dir))
    try:
        cfg_path = site(base).config_path
        cfg = config_pkg.load(cfg_path)
        sources = [f"cam-{i:02d}" for i in range(args.sources)]
        text = cfg_path.read_text()
        for src in sources:
            text += (
                f'\n[[cameras]]\nid = "{src}"\nsite = "demo"\nurl = "rtsp://127.0.0.1:1/{src}"\n'
                'retention = "office-camera"\nsegment_seconds = 10\n'
            )
        cfg_path.write_text(text)
        cfg = config_pkg.load(cfg_path)
        t0 = time.perf_counter()
        with Vault(cfg) as v:
            populate(v, args.segments, sources, datetime(2026, 1, 1, tzinfo=UTC))
        setup = time.perf_counter() - t0
        print(f"setup: {args.segments:,} rows + empty blobs over {len(sources)} cameras in {setup:.0f} s")
        env = {**os.environ, "PYTHONPATH": str(REPO), "HOLDFAST_CONFIG": str(cfg_path)}
        walk_cmd = [sys.executable, "-c", WALK, str(cfg.paths.store)]
        check_cmd = [sys.executable, "-c", CHECK]
        walks, checks = [], []
        for _ in range(args.repeat):
            w = measure(walk_cmd, env)
            assert int(w[2]) == args.segments, w[2]
            walks.append(w)
            c = measure(check_cmd, env)
            doc = json.loads(c[2])
            assert doc["ok"] and not doc["problems"], doc["problems"][:5]
            checks.append(c)
        bw = min(walks)
        bc = min(checks)
        print(f"{'':<40} {'wall':>8} {'peak RSS':>10}")
        print(f"{'baseline: os.walk + stat (all runs)':<40} {', '.join(f'{w[0]:.1f}' for w in walks):>8} s")
        print(f"{'holdfast check (all runs)':<40} {', '.join(f'{c[0]:.1f}' for c in checks):>8} s")
        print(f"{'baseline: os.walk + stat (best)':<40} {bw[0]:>7.1f}s {bw[1]:>8.0f} MiB")
        print(f"{'holdfast check, quick (best)':<40} {bc[0]:>7.1f}s {bc[1]:>8.0f} MiB")
        print(f"check / walk: {bc[0] / bw[0]:.1f}x; {args.segments / bc[0]:,.0f} segments/s")
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
