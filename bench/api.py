"""Benchmark the API with 1,000,000 segments indexed (issue #5).

  PYTHONPATH=. python bench/api.py [--rows 1000000] [--real 30] [--clients 50] [--seconds 10]

- rows: synthetic index rows for office-1 (bulk-inserted into SQLite; no blobs, keys shredded);
- real: real sealed segments for garage-1 (ffmpeg testsrc 1920x1080, 10 s, sealed + ingested);
- TTFB of playback at a random time: playlist request -> first byte of the first media segment;
- search latency: `clients` concurrent clients for `seconds` against GET /api/v1/segments (1M rows);
- export MB/s of the real segments vs raw decryption of the same segments in the same run.
"""

from __future__ import annotations

import argparse
import os
import random
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.support.appliance import make_appliance  # noqa: E402
from tests.support.footage import make_fmp4  # noqa: E402
from vault.ingest import Ingestor  # noqa: E402
from vault.spool import SpoolSegment  # noqa: E402
from vault.timeutil import iso  # noqa: E402

PW = "benchmark password"
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p / 100 * len(xs)))]


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


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--real", type=int, default=30)
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--plays", type=int, default=100)
    a = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-api-"))
    app = make_appliance(work / "site")
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
    real_start = T0 + timedelta(days=30)
    for i in range(a.real):
        st = real_start + timedelta(seconds=10 * i)
        seg = SpoolSegment(
            cfg.paths.spool, v.seal_public, {"source": "garage-1", "kind": "video", "start": iso(st)}
        )
        seg.write(clip.read_bytes())
        seg.close({"end": iso(st + timedelta(seconds=10)), "duration": 10.0, "end_reason": "bench"})
    Ingestor(v).scan()
    db = Path(cfg.database.url.removeprefix("sqlite:///"))
    ins = bulk_rows(db, a.rows)
    print(
        f"indexed {a.rows:,} synthetic rows in {ins:.1f} s; {a.real} real sealed segments ({clip.stat().st_size / 1e6:.2f} MB each)"
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
    try:
        for _ in range(300):
            try:
                httpx.get(base + "/healthz", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.1)
        tok = httpx.post(base + "/api/v1/auth/token", data={"username": "sec", "password": PW}).json()[
            "access_token"
        ]
        H = {"Authorization": f"Bearer {tok}"}
        rnd = random.Random(5)

        # TTFB of playback at a random time (real blobs), with the 1M-row index beside them.
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
            f"playback TTFB at a random time (playlist + first media bytes), {a.plays} plays: p50 {pct(ttfb, 50):.1f} ms, p99 {pct(ttfb, 99):.1f} ms"
        )

        # Search latency under concurrent clients, bounded in time.
        lat: list[float] = []
        errors = [0]
        lock = threading.Lock()
        stop = time.perf_counter() + a.seconds
        span = a.rows * 10

        def client(seed: int) -> None:
            r2 = random.Random(seed)
            with httpx.Client(base_url=base, headers=H, timeout=60) as c:
                while time.perf_counter() < stop:
                    t = T0 + timedelta(seconds=r2.uniform(0, span - 600))
                    t0 = time.perf_counter()
                    resp = c.get(
                        "/api/v1/segments",
                        params={"source": "office-1", "start": iso(t), "end": iso(t + timedelta(minutes=10))},
                    )
                    dt = (time.perf_counter() - t0) * 1000
                    with lock:
                        if resp.status_code == 200 and len(resp.json()) >= 59:
                            lat.append(dt)
                        else:
                            errors[0] += 1

        ths = [threading.Thread(target=client, args=(i,)) for i in range(a.clients)]
        t_start = time.perf_counter()
        for th in ths:
            th.start()
        for th in ths:
            th.join()
        wall = time.perf_counter() - t_start
        print(
            f"search (10-minute window, ~60 rows) over {a.rows:,} rows, {a.clients} concurrent clients for {wall:.1f} s: "
            f"{len(lat)} requests, {len(lat) / wall:.0f} req/s, p50 {pct(lat, 50):.1f} ms, p99 {pct(lat, 99):.1f} ms, errors {errors[0]}"
        )

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
        from vault.index import find_segments

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
        srv.wait(10)
        v.close()
        import shutil

        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONPATH", str(REPO))
    sys.exit(main())
