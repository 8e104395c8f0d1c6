"""Peak server memory and latency under a burst of logins, bounded vs effectively unbounded.

  PYTHONPATH=. python bench/logins.py [--burst 16]

Runs `holdfast serve` twice on a fresh appliance: `[api] max_password_checks = BURST` (every
login's argon2id check at once: the baseline, as before the bound) and the default 2. Each run:
one warm-up login, then BURST concurrent logins of unknown users; prints the growth of the
server's peak RSS (VmHWM) and the latency of those logins.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.common import scratch_dir  # noqa: E402
from tests.support.appliance import make_appliance  # noqa: E402
from tests.support.server import rss_mib, serve  # noqa: E402


def burst(directory: Path, checks: int, n: int) -> tuple[float, float, float]:
    app = make_appliance(directory)
    text = app.config_path.read_text()
    app.config_path.write_text(text.replace("max_password_checks = 2", f"max_password_checks = {checks}"))
    with serve(app) as (base, proc):
        httpx.post(base + "/api/v1/auth/token", data={"username": "warm", "password": "x" * 12}, timeout=300)
        _, hwm0 = rss_mib(proc.pid)
        lat: list[float] = []
        go = threading.Barrier(n)

        def one(k: int) -> None:
            go.wait()
            t0 = time.perf_counter()
            httpx.post(
                base + "/api/v1/auth/token",
                data={"username": f"nobody-{k}", "password": "x" * 12},
                timeout=300,
            )
            lat.append(time.perf_counter() - t0)

        ths = [threading.Thread(target=one, args=(k,)) for k in range(n)]
        for t in ths:
            t.start()
        for t in ths:
            t.join()
        _, hwm1 = rss_mib(proc.pid)
    return hwm1 - hwm0, statistics.median(lat), max(lat)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--burst", type=int, default=16)
    a = ap.parse_args()
    with scratch_dir("bench-logins-") as work:
        for checks, label in ((a.burst, "baseline (all at once)"), (2, "max_password_checks = 2")):
            grow, p50, worst = burst(work / f"site-{checks}", checks, a.burst)
            print(
                f"{a.burst} concurrent unknown-user logins, {label}: peak RSS +{grow:.0f} MiB, "
                f"latency p50 {p50 * 1000:.0f} ms, max {worst * 1000:.0f} ms"
            )
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONPATH", str(REPO))
    sys.exit(main())
