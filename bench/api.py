"""Benchmark the API with 1,000,000 segments indexed (SQLite) or 10,000,000 (PostgreSQL).

  PYTHONPATH=. python bench/api.py [--rows 1000000] [--real 30] [--clients 50] [--seconds 10]
      [--workers 1,2] [--threads 4] [--database postgresql://...] [--load wrk|threads]

- rows: synthetic index rows for office-1 (bulk-inserted: SQLite executemany, PostgreSQL one
  server-side INSERT ... SELECT FROM generate_series; no blobs, keys shredded);
- real: real sealed segments for garage-1 (ffmpeg testsrc 1920x1080, 10 s, sealed + ingested);
- for each `--workers` count and each `--threads` count, a fresh `holdfast serve` with
  `[api] workers = N` and `threads = T` (request threads a worker; the configuration's default is 4,
  anyio's own 40: `--threads 40,4,2` shows what the count does to the tail):
  - TTFB of playback at a random time: playlist request -> first byte of the first media segment;
  - search latency and the server's CPU per search (from /proc) with one client alone, then
    `clients` concurrent clients for `seconds`, against GET /api/v1/segments (a 10-minute
    window, ~60 rows), driven by wrk (`apt-get install wrk`,
    in the Makefile's packages), a C load generator that leaves the two cores to the server,
    or with `--load threads` by httpx clients in threads of this process (they take CPU from
    the server: the figure then includes the client's cost);
- beside them, in the same run: the bare SQL of the same search (the same two range scans over the
  same rows, no HTTP, no ORM), one client and `clients` concurrent connections;
- export MB/s of the real segments vs raw decryption of the same segments (bench/export.py times
  exports properly: medians, fair cache order).

Everything made is removed at the end, including the appliance's tmpfs scratch in /dev/shm.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.common import bearer_when_up, ingest_clips  # noqa: E402
from tests.support.appliance import Appliance, make_appliance  # noqa: E402
from tests.support.footage import make_fmp4  # noqa: E402
from vault.timeutil import iso  # noqa: E402

PW = "benchmark password"
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p / 100 * len(xs)))]


def concurrently(client: Callable[[int], None], n: int) -> float:
    """Run client(0) .. client(n - 1) in n threads at once; the wall-clock seconds until all end."""
    ths = [threading.Thread(target=client, args=(i,)) for i in range(n)]
    t_start = time.perf_counter()
    for th in ths:
        th.start()
    for th in ths:
        th.join()
    return time.perf_counter() - t_start


def bulk_rows(db: Path, rows: int) -> float:
    """Synthetic office-1 rows, 10 s apart, keys NULL (shredded): index scale without blobs."""
    t = time.perf_counter()
    con = sqlite3.connect(db)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA synchronous=OFF")
    base = T0.replace(tzinfo=None)

    def gen():  # type: ignore[no-untyped-def]
        for i in range(rows):
            s = base + timedelta(seconds=10 * i)
            e = s + timedelta(seconds=10)
            yield (
                f"syn{i:029d}",
                "office-1",
                "video",
                s,
                e,
                10.0,
                1_250_000,
                1_250_400,
                "0" * 64,
                "office-camera",
                e + timedelta(days=14),
                f"office-1/{s:%Y/%m/%d}/syn{i:029d}",
                "stored",
                "00" * 8,
                None,
                0,
                "{}",
                e,
            )

    con.executemany(
        'INSERT INTO segments (id, source, kind, start, "end", duration, plaintext_bytes, stored_bytes, sha256, '
        "retention_class, deadline, storage_key, state, key_id, envelope, cut_short, meta, ingested_at) "
        "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
        gen(),
    )
    con.commit()
    con.close()
    return time.perf_counter() - t


def bulk_rows_pg(url: str, rows: int) -> float:
    """The same synthetic rows, generated server-side in one statement (10M rows in minutes)."""
    import psycopg

    t = time.perf_counter()
    with psycopg.connect(url, autocommit=True) as c:
        c.execute(
            'INSERT INTO segments (id, source, kind, start, "end", duration, plaintext_bytes, stored_bytes, '
            "sha256, retention_class, deadline, storage_key, state, key_id, envelope, cut_short, meta, "
            "ingested_at) SELECT 'syn' || lpad(i::text, 29, '0'), 'office-1', 'video', "
            "%(t0)s + i * interval '10 seconds', %(t0)s + (i + 1) * interval '10 seconds', 10.0, "
            "1250000, 1250400, repeat('0', 64), 'office-camera', "
            "%(t0)s + (i + 1) * interval '10 seconds' + interval '14 days', "
            "'office-1/syn' || lpad(i::text, 29, '0'), 'stored', '0000000000000000', NULL, false, "
            "'{}'::json, %(t0)s + (i + 1) * interval '10 seconds' FROM generate_series(0, %(n)s - 1) AS i",
            {"t0": T0.replace(tzinfo=None), "n": rows},
        )
        c.execute("VACUUM ANALYZE segments")
    return time.perf_counter() - t


def use_database(app: Appliance, url: str) -> None:
    import re

    text = re.sub(
        r'^url = "sqlite:///.*"$', f'url = "{url}"', app.config_path.read_text(), count=1, flags=re.M
    )
    app.config_path.write_text(text)


#: The search's two range scans as bare SQL: the rows just before the window, then those in it.
BARE = (
    'SELECT id, source, kind, meta, start, "end", duration, cut_short, plaintext_bytes FROM segments '
    "WHERE source = {p} AND start < {p} ORDER BY start DESC LIMIT 8",
    'SELECT id, source, kind, meta, start, "end", duration, cut_short, plaintext_bytes FROM segments '
    "WHERE source = {p} AND start >= {p} AND start < {p} ORDER BY start LIMIT 1000",
)


def bare_sql(url: str, rows: int, clients: int, seconds: float) -> None:
    """The search's SQL alone, one client then `clients` connections at once, in this process."""
    pg = url.startswith("postgresql")
    span = rows * 10

    def connect() -> Any:
        if pg:
            import psycopg

            return psycopg.connect(url)
        return sqlite3.connect(url.removeprefix("sqlite:///"), check_same_thread=False)

    def one(con: Any, r: random.Random) -> int:
        t = (T0 + timedelta(seconds=r.uniform(0, span - 600))).replace(tzinfo=None)
        e = t + timedelta(minutes=10)
        p = "%s" if pg else "?"
        a_, b_ = (t, e) if pg else (t.isoformat(" "), e.isoformat(" "))
        n = len(con.execute(BARE[0].format(p=p), ("office-1", a_)).fetchall())
        n += len(con.execute(BARE[1].format(p=p), ("office-1", a_, b_)).fetchall())
        if pg:
            con.rollback()
        return n

    con = connect()
    r0 = random.Random(1)
    lat = []
    for _ in range(200):
        t0 = time.perf_counter()
        assert one(con, r0) >= 59
        lat.append((time.perf_counter() - t0) * 1000)
    con.close()
    print(f"  bare SQL, one client: p50 {pct(lat, 50):.2f} ms, p99 {pct(lat, 99):.2f} ms")
    lat = []
    lock = threading.Lock()
    stop = time.perf_counter() + seconds

    def client(seed: int) -> None:
        c, r = connect(), random.Random(seed)
        while time.perf_counter() < stop:
            t0 = time.perf_counter()
            one(c, r)
            with lock:
                lat.append((time.perf_counter() - t0) * 1000)
        c.close()

    wall = concurrently(client, clients)
    print(
        f"  bare SQL, {clients} concurrent connections (threads of one process): {len(lat) / wall:.0f} q/s, "
        f"p50 {pct(lat, 50):.1f} ms, p99 {pct(lat, 99):.1f} ms"
    )


def server_cpu(pid: int) -> float:
    """CPU seconds (user + system) used so far by a process and its live descendants (the workers)."""
    ticks = 0
    stack = [pid]
    while stack:
        p = stack.pop()
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rpartition(")")[2].split()
            ticks += int(fields[11]) + int(fields[12])  # utime, stime
            for task in Path(f"/proc/{p}/task").iterdir():
                stack += [int(c) for c in (task / "children").read_text().split()]
        except FileNotFoundError:  # ended between the reads
            continue
    return ticks / os.sysconf("SC_CLK_TCK")


def postmaster_pid(url: str | None) -> int | None:
    """The PostgreSQL server's main process (its backends are its children), or None on SQLite.

    Each search also costs the database backend CPU on the same cores; the bench prints it
    beside the server's so the two are not confused."""
    if not url or not url.startswith("postgresql"):
        return None
    import psycopg

    with psycopg.connect(url) as c:
        backend = c.execute("SELECT pg_backend_pid()").fetchone()[0]  # type: ignore[index]
    return int(Path(f"/proc/{backend}/stat").read_text().rpartition(")")[2].split()[1])


def serve_and_measure(
    app: Appliance, a: argparse.Namespace, workers: int, threads: int, real_start: datetime
) -> None:
    text = app.config_path.read_text()
    app.config_path.write_text(
        text.replace("[api]\n", f"[api]\nworkers = {workers}\nthreads = {threads}\n", 1)
    )
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    srv = app.popen(
        "--log-level",
        "WARNING",
        "serve",
        "--port",
        str(port),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    print(f"holdfast serve with [api] workers = {workers}, threads = {threads}:")
    try:
        H = bearer_when_up(base, "sec", PW)
        rnd = random.Random(5)

        # TTFB of playback at a random time (real blobs), with the large index beside them.
        ttfb = []
        with httpx.Client(base_url=base, headers=H, timeout=30) as c:
            for _ in range(a.plays):
                t = real_start + timedelta(seconds=rnd.uniform(0, 10 * a.real - 10))
                t0 = time.perf_counter()
                pl = c.get(
                    "/api/v1/cameras/garage-1/playlist.m3u8",
                    params={"start": iso(t), "end": iso(t + timedelta(minutes=2)), "purpose": "bench"},
                )
                pl.raise_for_status()
                lines = pl.text.splitlines()
                uri = next(x for x in lines if x.startswith("/api/v1/play/"))
                br = next(x for x in lines if x.startswith("#EXT-X-BYTERANGE:")).split(":")[1]
                n, off = (int(x) for x in br.split("@"))
                with c.stream("GET", uri, headers={"Range": f"bytes={off}-{off + n - 1}"}) as r:
                    next(r.iter_raw())
                ttfb.append((time.perf_counter() - t0) * 1000)
        print(
            f"  playback TTFB at a random time (playlist + first media bytes), {a.plays} plays: "
            f"p50 {pct(ttfb, 50):.1f} ms, p99 {pct(ttfb, 99):.1f} ms"
        )
        span = a.rows * 10

        def search(c: httpx.Client, r2: random.Random) -> tuple[float, bool]:
            t = T0 + timedelta(seconds=r2.uniform(0, span - 600))
            t0 = time.perf_counter()
            resp = c.get(
                "/api/v1/segments",
                params={"source": "office-1", "start": iso(t), "end": iso(t + timedelta(minutes=10))},
            )
            dt = (time.perf_counter() - t0) * 1000
            return dt, resp.status_code == 200 and len(resp.json()) >= 59

        single = []
        with httpx.Client(base_url=base, headers=H, timeout=60) as c:
            r1 = random.Random(9)
            db = postmaster_pid(a.database)
            cpu0 = server_cpu(srv.pid)
            db0 = server_cpu(db) if db else 0.0
            for _ in range(a.single):
                dt, ok = search(c, r1)
                assert ok
                single.append(dt)
            cpu = (server_cpu(srv.pid) - cpu0) / a.single * 1000
            db_cpu = (server_cpu(db) - db0) / a.single * 1000 if db else None
        print(
            f"  search, one client, {a.single} requests: p50 {pct(single, 50):.1f} ms, "
            f"p99 {pct(single, 99):.1f} ms; server CPU {cpu:.2f} ms a request"
            + (f", database CPU {db_cpu:.2f} ms a request" if db_cpu is not None else "")
        )

        if a.load == "wrk":
            wrk_search(base, H, a)
        else:
            threads_search(base, H, a, search)
    finally:
        srv.terminate()
        srv.wait(30)
        app.config_path.write_text(text)


def threads_search(base: str, H: dict[str, str], a: argparse.Namespace, search: Any) -> None:
    """Search latency under `a.clients` httpx clients in threads of this process (they share the
    cores with the server: the figure includes their CPU)."""
    lat: list[float] = []
    errors = [0]
    lock = threading.Lock()
    stop = time.perf_counter() + a.seconds

    def client(seed: int) -> None:
        r2 = random.Random(seed)
        with httpx.Client(base_url=base, headers=H, timeout=60) as c:
            while time.perf_counter() < stop:
                dt, ok = search(c, r2)
                with lock:
                    if ok:
                        lat.append(dt)
                    else:
                        errors[0] += 1

    wall = concurrently(client, a.clients)
    print(
        f"  search (10-minute window, ~60 rows) over {a.rows:,} rows, {a.clients} concurrent clients "
        f"(httpx threads) for {wall:.1f} s: {len(lat)} requests, {len(lat) / wall:.0f} req/s, "
        f"p50 {pct(lat, 50):.1f} ms, p99 {pct(lat, 99):.1f} ms, errors {errors[0]}"
    )


#: wrk's script: each request asks for a random 10-minute window of office-1; done() prints the
#: figures on one line for wrk_search to read (latencies in microseconds).
WRK_LUA = """
math.randomseed(%(seed)d)
request = function()
  local t = %(t0)d + math.random(0, %(span)d)
  local a = os.date("!%%Y-%%m-%%dT%%H:%%M:%%SZ", t)
  local b = os.date("!%%Y-%%m-%%dT%%H:%%M:%%SZ", t + 600)
  return wrk.format("GET", "/api/v1/segments?source=office-1&start=" .. a .. "&end=" .. b)
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("WRK %%d %%d %%d %%d %%d %%d %%d\\n", summary.requests, summary.duration,
    e.status, e.connect + e.read + e.write + e.timeout, latency:percentile(50),
    latency:percentile(99), latency.max))
end
"""


def wrk_search(base: str, H: dict[str, str], a: argparse.Namespace) -> None:
    """Search latency under `a.clients` connections driven by wrk (Debian's `wrk`, a C load
    generator: `apt-get install wrk`), which leaves the cores to the server far more than
    Python clients do. A closed loop: each connection sends its next request when the last
    is answered, so mean latency = clients / throughput (Little's law)."""
    script = Path(tempfile.mkdtemp(prefix="bench-wrk-")) / "search.lua"
    script.write_text(WRK_LUA % {"seed": 7, "t0": int(T0.timestamp()), "span": a.rows * 10 - 600})
    try:
        out = subprocess.run(
            ["wrk", "-t", "2", "-c", str(a.clients), "-d", f"{a.seconds:g}s", "--timeout", "30s"]
            + ["-H", f"Authorization: {H['Authorization']}", "-s", str(script), base],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    finally:
        script.unlink()
        script.parent.rmdir()
    line = next(x for x in out.splitlines() if x.startswith("WRK "))
    n, us, bad, broken, p50, p99, top = (int(x) for x in line.split()[1:])
    print(
        f"  search (10-minute window, ~60 rows) over {a.rows:,} rows, {a.clients} concurrent connections "
        f"(wrk) for {us / 1e6:.1f} s: {n} requests, {n / (us / 1e6):.0f} req/s, p50 {p50 / 1000:.1f} ms, "
        f"p99 {p99 / 1000:.1f} ms, max {top / 1000:.0f} ms, non-2xx {bad}, socket errors {broken}"
    )


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--real", type=int, default=30)
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--plays", type=int, default=100)
    ap.add_argument("--single", type=int, default=1000, help="one client's searches (and its CPU figure)")
    ap.add_argument("--workers", default="1,2", help="worker counts to serve with, one run each")
    ap.add_argument("--threads", default="4", help="request threads a worker ([api] threads), one run each")
    ap.add_argument("--database", help="an empty PostgreSQL database URL (default: the appliance's SQLite)")
    ap.add_argument("--no-export", action="store_true", help="skip the export timing")
    ap.add_argument(
        "--load",
        choices=("wrk", "threads"),
        default="wrk" if shutil.which("wrk") else "threads",
        help="the 50-client search load: wrk (default when installed) or httpx threads in this process",
    )
    a = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-api-"))
    app = make_appliance(work / "site")
    try:
        return run(app, work, a)
    finally:
        # `holdfast init` puts the scratch on tmpfs (/dev/shm/holdfast-*), outside the work dir.
        scratch = app.cfg.paths.scratch
        if scratch.parent == Path("/dev/shm") and scratch.name.startswith("holdfast-"):
            shutil.rmtree(scratch, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)


def run(app: Appliance, work: Path, a: argparse.Namespace) -> int:
    if a.database:
        use_database(app, a.database)
    cfg = app.cfg
    app.cli(
        "users",
        "add",
        "sec",
        "--role",
        "security",
        "--site",
        "demo",
        "--password-stdin",
        input=(PW + "\n").encode(),
    )
    clip = make_fmp4(work / "clip.mp4", 10.0, size="1920x1080")
    v = app.vault()
    real_start = T0 + timedelta(days=200)
    ingest_clips(v, "garage-1", real_start, a.real, clip)
    url = cfg.database.url
    if url.startswith("postgresql"):
        ins = bulk_rows_pg(url, a.rows)
    else:
        ins = bulk_rows(Path(url.removeprefix("sqlite:///")), a.rows)
    print(
        f"{url.split(':')[0]}: indexed {a.rows:,} synthetic rows in {ins:.1f} s; {a.real} real sealed segments "
        f"({clip.stat().st_size / 1e6:.2f} MB each)"
    )
    try:
        bare_sql(url, a.rows, a.clients, a.seconds)
        for n in (int(x) for x in a.workers.split(",")):
            for t in (int(x) for x in a.threads.split(",")):
                serve_and_measure(app, a, n, t, real_start)
        if not a.no_export:
            export(app, a, v, real_start)
    finally:
        v.close()
    return 0


def export(app: Appliance, a: argparse.Namespace, v: Any, real_start: datetime) -> None:
    """Export MB/s of the real segments vs raw decryption of the same segments (one run each)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    srv = app.popen("--log-level", "WARNING", "serve", "--port", str(port), stdout=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        H = bearer_when_up(base, "sec", PW)
        # Export throughput vs raw decryption of the same segments.
        with httpx.Client(base_url=base, headers=H, timeout=600) as c:
            inc = c.post(
                "/api/v1/incidents",
                json={
                    "site": "demo",
                    "cameras": ["garage-1"],
                    "start": iso(real_start),
                    "end": iso(real_start + timedelta(seconds=10 * a.real)),
                    "description": "benchmark export",
                },
            ).json()["id"]
            t0 = time.perf_counter()
            with c.stream("POST", f"/api/v1/incidents/{inc}/export") as r:
                r.raise_for_status()
                zbytes = sum(len(b) for b in r.iter_raw())
            t_exp = time.perf_counter() - t0
        from vault.index.queries import find_segments

        t0 = time.perf_counter()
        plain = 0
        with v.sessions() as s:
            segs = find_segments(s, "garage-1", None, None, None)
        for seg in segs:
            with v.open_segment(seg) as rd:
                for piece in rd.iter_range(0, rd.plaintext_size):
                    plain += len(piece)
        t_dec = time.perf_counter() - t0
        print(
            f"export of {len(segs)} segments ({plain / 1e6:.1f} MB plaintext, zip {zbytes / 1e6:.1f} MB): {t_exp:.2f} s = {plain / 1e6 / t_exp:.0f} MB/s; "
            f"raw decryption of the same segments: {t_dec:.3f} s = {plain / 1e6 / t_dec:.0f} MB/s"
        )
    finally:
        srv.terminate()
        srv.wait(30)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONPATH", str(REPO))
    sys.exit(main())
