"""Benchmark `holdfast segments list` over a large index, beside the API's search query.

  PYTHONPATH=. python bench/segments.py [--rows 1000000] [--runs 20]

The index is filled by bench/api.py's filler (synthetic office-1 rows, 10 s apart). Measured
in the same run: the query the CLI and the API's GET /api/v1/segments share
(vault.index.queries.find_segments) for a 10-minute window at random times; the overlap filter
`start < b AND end > a` as a baseline; and the `holdfast segments list` command end to end
(a new process each time, so it includes the interpreter's start-up, shown beside it as
`holdfast --help`).
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from sqlalchemy import select  # noqa: E402

from bench.api import T0, bulk_rows, pct  # noqa: E402
from tests.support.appliance import make_appliance  # noqa: E402
from vault.index.queries import find_segments  # noqa: E402
from vault.index.schema import Segment  # noqa: E402
from vault.timeutil import iso  # noqa: E402


def overlap_filter(session, source: str, a, b) -> list[Segment]:  # type: ignore[no-untyped-def]
    """The baseline: every segment with start < b and end > a, the filter `segments list` used."""
    q = (
        select(Segment)
        .where(Segment.source == source, Segment.start < b, Segment.end > a)
        .order_by(Segment.source, Segment.start)
    )
    return list(session.scalars(q))


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--runs", type=int, default=20)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-segments-") as tmp:
        work = Path(tmp)
        app = make_appliance(work / "site")
        db = Path(app.cfg.database.url.removeprefix("sqlite:///"))
        ins = bulk_rows(db, a.rows)
        print(f"indexed {a.rows:,} synthetic rows in {ins:.1f} s")
        rnd = random.Random(7)
        span = a.rows * 10
        windows = [T0 + timedelta(seconds=rnd.uniform(0, span - 600)) for _ in range(a.runs)]
        v = app.vault()
        fast, slow = [], []
        with v.sessions() as s:
            for t in windows:
                t0 = time.perf_counter()
                n = len(find_segments(s, "office-1", t, t + timedelta(minutes=10)))
                fast.append((time.perf_counter() - t0) * 1000)
                t0 = time.perf_counter()
                m = len(overlap_filter(s, "office-1", t, t + timedelta(minutes=10)))
                slow.append((time.perf_counter() - t0) * 1000)
                assert n == m, (n, m)
        v.close()
        print(
            f"query, 10-minute window (~60 rows), {a.runs} times: find_segments p50 {pct(fast, 50):.1f} ms, "
            f"p99 {pct(fast, 99):.1f} ms; overlap filter p50 {pct(slow, 50):.0f} ms, p99 {pct(slow, 99):.0f} ms"
        )
        cli, boot = [], []
        for t in windows[: min(5, a.runs)]:
            args = ["segments", "list", "--source", "office-1", "--from", iso(t)]
            t0 = time.perf_counter()
            out = app.cli(*args, "--to", iso(t + timedelta(minutes=10)), "--json").stdout
            cli.append((time.perf_counter() - t0) * 1000)
            assert out.count(b'"id"') >= 59, out[:200]
            t0 = time.perf_counter()
            app.cli("--help", check=False)
            boot.append((time.perf_counter() - t0) * 1000)
        t0 = time.perf_counter()
        out = app.cli(
            "segments", "list", "--from", iso(windows[0]), "--to", iso(windows[0] + timedelta(minutes=10))
        )
        every = (time.perf_counter() - t0) * 1000
        print(
            f"holdfast segments list --source office-1 --from --to (10 minutes), {len(cli)} runs: "
            f"p50 {pct(cli, 50):.0f} ms; holdfast --help p50 {pct(boot, 50):.0f} ms; "
            f"all sources (no --source): {every:.0f} ms"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
