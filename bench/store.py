"""Benchmark the S3 store on a private Ceph RGW, each figure beside a bare-S3 baseline, same RGW, same run.

    PYTHONPATH=. python bench/store.py [--segments 300] [--size-kib 512] [--purge 1000]

1. Ingest: N sealed segments in the spool ingested by `Ingestor.scan()` (verify, list, PUT with
   Content-MD5, HEAD, index row in SQLite, spool unlink) against a bare loop of `put_object`
   of the same stored bytes to another bucket with one boto3 client.
2. Purge: M expired segments (real objects, one version each) purged by `Purger.run()` (mark +
   shred, DeleteObjects by version id 1,000 a call, purge-log entries, row delete, checkpoint)
   against a bare loop of `delete_objects` over M other objects' versions, 1,000 a call.
3. Ranged read: time to the first decrypted byte of a range in the middle of a segment
   (`Vault.open_segment` + `read`: ranged GETs of header, footer and the chunks the range
   touches) against a bare ranged `get_object` of the same number of bytes, median of K.

The cluster is started by tests/support/rgw.py (mon, memstore OSD, radosgw on 127.0.0.1) and
torn down at the end; nothing is left behind.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.common import site  # noqa: E402
from tests.support.appliance import Appliance  # noqa: E402
from tests.support.rgw import RgwCluster, plain_client, use_s3_store  # noqa: E402
from vault.retention.purge import Purger  # noqa: E402
from vault.store.ingest import Ingestor  # noqa: E402
from vault.store.spool import SpoolSegment  # noqa: E402
from vault.timeutil import iso  # noqa: E402
from vault.vault import Vault  # noqa: E402

T0 = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)


def _appliance(base: Path, rgw: RgwCluster) -> Appliance:
    app = site(base, clock_sync=False)
    return use_s3_store(app, rgw)


def _spool(v: Vault, source: str, start: datetime, n: int, size: int) -> None:
    payload = os.urandom(size)
    for i in range(n):
        s = start + timedelta(seconds=10 * i)
        seg = SpoolSegment(
            v.cfg.paths.spool, v.seal_public, {"source": source, "kind": "video", "start": iso(s)}
        )
        seg.write(payload)
        seg.close({"end": iso(s + timedelta(seconds=10)), "duration": 10.0})


def _rate(n: int, seconds: float) -> str:
    return f"{n / seconds:8.1f}/s  ({seconds:6.2f} s)"


def bench_ingest(v: Vault, rgw: RgwCluster, n: int, size: int) -> None:
    _spool(v, "office-1", T0, n, size)
    blobs = [p.read_bytes() for p in sorted(v.cfg.paths.spool.glob("*.seg"))]
    t = time.perf_counter()
    st = Ingestor(v).scan()
    ingest = time.perf_counter() - t
    assert st.indexed == n, st
    client = plain_client(rgw)
    bare_bucket = "bench-bare-" + uuid.uuid4().hex[:8]
    client.create_bucket(Bucket=bare_bucket, ObjectLockEnabledForBucket=True)
    t = time.perf_counter()
    for i, b in enumerate(blobs):
        client.put_object(Bucket=bare_bucket, Key=f"bare/{i}", Body=b)
    bare = time.perf_counter() - t
    mib = n * size / 2**20
    print(f"ingest   {n} x {size // 1024} KiB   holdfast {_rate(n, ingest)} {mib / ingest:6.1f} MiB/s")
    print(f"         bare put_object loop      {_rate(n, bare)} {mib / bare:6.1f} MiB/s")
    print(f"         ratio holdfast/bare time  {ingest / bare:.2f}")


def bench_purge(v: Vault, rgw: RgwCluster, m: int) -> None:
    # recorded 60 days ago: past garage-1's 21 days by the real clock (which the purge's clock
    # guard compares with the ingest times just written)
    start = datetime.now(UTC) - timedelta(days=60)
    _spool(v, "garage-1", start, m, 4096)
    st = Ingestor(v).scan()
    assert st.indexed == m, st
    t = time.perf_counter()
    rep = Purger(v, batch_size=1000).run()
    purge = time.perf_counter() - t
    assert rep.purged["expired"] >= m, rep.purged
    client = plain_client(rgw)
    bucket = "bench-del-" + uuid.uuid4().hex[:8]
    client.create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=True)
    body = os.urandom(4096)
    versions = []
    for i in range(m):
        r = client.put_object(Bucket=bucket, Key=f"bare/{i}", Body=body)
        versions.append({"Key": f"bare/{i}", "VersionId": r["VersionId"]})
    t = time.perf_counter()
    for i in range(0, m, 1000):
        client.delete_objects(Bucket=bucket, Delete={"Objects": versions[i : i + 1000], "Quiet": True})
    bare = time.perf_counter() - t
    print(f"purge    {m} segments            holdfast {_rate(m, purge)}")
    print(f"         bare DeleteObjects loop   {_rate(m, bare)}")
    print(f"         ratio holdfast/bare time  {purge / bare:.2f}")


def bench_ranged_read(v: Vault, rgw: RgwCluster, k: int, size: int) -> None:
    from sqlalchemy import select

    from vault.index.schema import Segment

    with v.sessions() as s:
        segs = list(s.scalars(select(Segment).where(Segment.source == "office-1").limit(k)))
    client = plain_client(rgw)
    ours, bare = [], []
    off, length = size // 2, 64 * 1024
    for seg in segs:
        t = time.perf_counter()
        with v.open_segment(seg) as r:
            first = next(r.iter_range(off, length))
        ours.append(time.perf_counter() - t)
        assert first
        t = time.perf_counter()
        got = client.get_object(
            Bucket=v.cfg.store.bucket,
            Key=seg.storage_key,
            VersionId=seg.storage_version,
            Range=f"bytes={off}-{off + length - 1}",
        )["Body"].read(1)
        bare.append(time.perf_counter() - t)
        assert got
    print(f"read     time to first byte of a 64 KiB range mid-segment, median of {len(segs)}")
    print(f"         holdfast (header+footer+chunks, decrypt) {statistics.median(ours) * 1000:7.1f} ms")
    print(f"         bare ranged get_object                   {statistics.median(bare) * 1000:7.1f} ms")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--segments", type=int, default=300, help="segments to ingest")
    ap.add_argument("--size-kib", type=int, default=512, help="plaintext size of each ingested segment")
    ap.add_argument("--purge", type=int, default=1000, help="segments to purge")
    ap.add_argument("--reads", type=int, default=30, help="ranged reads to time")
    args = ap.parse_args()
    base = Path(tempfile.mkdtemp(prefix="holdfast-bench-store-", dir="/var/tmp"))
    t = time.perf_counter()
    rgw = RgwCluster().start()
    print(f"RGW (mon + memstore OSD + radosgw) up in {time.perf_counter() - t:.1f} s at {rgw.endpoint}")
    try:
        app = _appliance(base, rgw)
        v = Vault(app.cfg)
        size = args.size_kib * 1024
        bench_ingest(v, rgw, args.segments, size)
        bench_ranged_read(v, rgw, min(args.reads, args.segments), size)
        bench_purge(v, rgw, args.purge)
        v.close()
    finally:
        rgw.stop()
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
