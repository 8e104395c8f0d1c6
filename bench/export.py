"""Export throughput beside raw decryption of the same segments, in the same run.

  PYTHONPATH=. python bench/export.py [--segments 30] [--repeats 5]

One camera, `segments` real sealed segments of one continuous run (ffmpeg testsrc 1920x1080,
10 s each, decode times restarting at 0 in each as after a reconnect). Timed, each as the median
of `repeats` runs after one warm-up run of each, alternating which goes first (fair cache order):

- raw: decrypting every segment's plaintext (the floor an export cannot beat);
- decrypt + SHA-256: raw plus the per-segment plaintext hash every export's manifest lists;
- format floor: raw plus every pass the evidence format asks of each byte, in one thread (the
  segment's SHA-256, the joined file's SHA-256, the zip's CRC-32): what an export costs in CPU
  before any joining, copying or sending, and so what bounds it on a box with no idle core;
- join: `vault.exports.evidence._join` in process, the run's one MP4 as the export writes it (decrypt,
  per-segment SHA-256, box-by-box join into tmpfs scratch);
- export: POST /api/v1/incidents/{id}/export over HTTP to the last byte of the zip (join, file
  hashes, signed manifest, streamed zip);
- ffmpeg concat: the same run through ffmpeg's concat demuxer and `+faststart` (the fallback);
- HTTP transport alone: as many bytes as the export's zip, from memory in pieces of each size in
  `--pieces` (MiB; the export's own is `evidence.STREAM_PIECE`), through the same server stack
  (uvicorn with uvloop and httptools, FastAPI's StreamingResponse from a sync iterator, in its own
  process) to the same clients: what sending costs before any export work.

The export and the transport are each timed with two clients taking turns: httpx in this process
(Python, so its reading competes with the server for the box's cores) and Debian's curl (C, in its
own process, body to /dev/null, its byte count checked). curl's rows are its own `time_total`
(connect to last byte, as the httpx rows time it); the wall time with curl's process start is
printed beside it.

The exported MP4 is then checked by ffmpeg: `ffmpeg -v error -i run.mp4 -f null -` prints nothing
and its frame count equals the sum of the segments' frames.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
import zlib
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.common import bearer_when_up, ingest_clips  # noqa: E402
from tests.support.appliance import make_appliance  # noqa: E402
from tests.support.footage import make_fmp4  # noqa: E402
from vault.exports import evidence  # noqa: E402
from vault.media import tools  # noqa: E402
from vault.timeutil import iso  # noqa: E402

PW = "benchmark password"
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def median_time(fn: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def curl(url: str, headers: dict[str, str], size: int | None = None) -> tuple[float, float]:
    """POST `url` with curl, the body to /dev/null: (curl's time_total, wall time with its start).
    Raises unless it answered 2xx with `size` bytes (any size when None)."""
    cmd = ["curl", "-s", "-S", "-f", "-X", "POST", "-o", "/dev/null", "-w", "%{size_download} %{time_total}"]
    for k, val in headers.items():
        cmd += ["-H", f"{k}: {val}"]
    t0 = time.perf_counter()
    r = subprocess.run([*cmd, url], capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t0
    if r.returncode != 0:
        raise RuntimeError(f"curl {url} failed ({r.returncode}): {r.stderr.strip()}")
    got, total = r.stdout.split()
    if size is not None and int(got) != size:
        raise RuntimeError(f"curl got {got} bytes from {url}, not {size}")
    return float(total), wall


#: A server of `size` zero bytes in `chunk`-byte pieces on 127.0.0.1:PORT, as the API streams a zip.
TRANSPORT_SERVER = """
import sys, uvicorn
from fastapi import FastAPI
from fastapi.responses import StreamingResponse
size, chunk, port = (int(x) for x in sys.argv[1:4])
blob = bytes(chunk)
app = FastAPI()

@app.post("/bytes")
def send() -> StreamingResponse:
    def body():
        for at in range(0, size, chunk):
            yield blob[: min(chunk, size - at)]
    return StreamingResponse(body(), media_type="application/zip")

uvicorn.run(app, host="127.0.0.1", port=port, log_config=None, access_log=False,
            loop="uvloop", http="httptools")
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def fetch(c: httpx.Client, path: str, into: io.BytesIO) -> None:
    """POST `path`, its body read as it streams into `into` (emptied first)."""
    into.seek(0)
    into.truncate()
    with c.stream("POST", path) as r:
        r.raise_for_status()
        for b in r.iter_raw():
            into.write(b)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--segments", type=int, default=30)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--pieces", default=f"{evidence.STREAM_PIECE / (1 << 20):g},4",
                    help="transport piece sizes to time, MiB, comma-separated")  # fmt: skip
    a = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-export-"))
    app = make_appliance(work / "site")
    cfg = app.cfg
    app.cli("users", "add", "sec", "--role", "security", "--site", "demo", "--password-stdin",
            input=(PW + "\n").encode())  # fmt: skip
    clip = make_fmp4(work / "clip.mp4", 10.0, size="1920x1080")
    clip_frames = tools.count_frames(clip)
    v = app.vault()
    start = T0 + timedelta(days=30)
    ingest_clips(v, "garage-1", start, a.segments, clip)
    from vault.index.queries import find_segments

    with v.sessions() as s:
        segs = find_segments(s, "garage-1", None, None, None)
    plain = sum(int(x.plaintext_bytes or 0) for x in segs)
    scratch = evidence.scratch_dir(evidence.export_scratch(cfg))

    def raw() -> None:
        for seg in segs:
            with v.open_segment(seg) as rd:
                for _ in rd.iter_range(0, rd.plaintext_size):
                    pass

    def hashed() -> None:
        for seg in segs:
            h = hashlib.sha256()
            with v.open_segment(seg) as rd:
                for piece in rd.iter_range(0, rd.plaintext_size):
                    h.update(piece)

    def floor() -> None:
        crc = 0
        for seg in segs:
            h, whole = hashlib.sha256(), hashlib.sha256()
            with v.open_segment(seg) as rd:
                for piece in rd.iter_range(0, rd.plaintext_size):
                    h.update(piece)
                    whole.update(piece)
                    crc = zlib.crc32(piece, crc)

    def join() -> None:
        out = scratch / "join.mp4"
        evidence._join(v, evidence.ExportPart("garage-1", list(segs)), scratch, out)
        out.unlink()

    def concat() -> None:
        out = scratch / "concat.mp4"
        evidence._concat(v, evidence.ExportPart("garage-1", list(segs)), scratch, out)
        out.unlink()

    port = free_port()
    srv = app.popen("--log-level", "WARNING", "serve", "--port", str(port),
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        c = httpx.Client(base_url=base, headers=bearer_when_up(base, "sec", PW), timeout=600)
        inc = c.post(
            "/api/v1/incidents",
            json={"site": "demo", "cameras": ["garage-1"], "start": iso(start),
                  "end": iso(start + timedelta(seconds=10 * a.segments)), "description": "benchmark export"},
        ).json()["id"]  # fmt: skip
        last_zip = io.BytesIO()
        exp_url = f"{base}/api/v1/incidents/{inc}/export"
        curl_wall: list[float] = []

        def export() -> None:
            fetch(c, f"/api/v1/incidents/{inc}/export", last_zip)

        def export_curl() -> float:
            total, wall = curl(exp_url, dict(c.headers), len(last_zip.getvalue()) or None)
            curl_wall.append(wall)
            return total

        for fn in (raw, hashed, floor, join, export, export_curl):  # warm-up: cache, keys, the server
            fn()
        curl_wall.clear()
        t_raw: list[float] = []
        t_hash: list[float] = []
        t_floor: list[float] = []
        t_join: list[float] = []
        t_exp: list[float] = []
        t_curl: list[float] = []
        order = [(raw, t_raw), (hashed, t_hash), (floor, t_floor), (join, t_join), (export, t_exp)]
        for i in range(a.repeats):
            turn = [*order, (export_curl, t_curl)]
            for fn, into in turn[i % len(turn) :] + turn[: i % len(turn)]:
                if fn is export_curl:
                    into.append(export_curl())
                else:
                    into.append(median_time(fn, 1))
        t_concat = median_time(concat, max(1, a.repeats // 2))
        c.close()
        pieces = [int(float(x) * (1 << 20)) for x in a.pieces.split(",")]
        sends = transport(len(last_zip.getvalue()), a.repeats, pieces)

        mb = plain / 1e6
        r_raw, r_hash, r_floor, r_join, r_exp = (
            statistics.median(x) for x in (t_raw, t_hash, t_floor, t_join, t_exp)
        )
        r_cat = t_concat
        print(f"{len(segs)} segments of one run, {mb:.1f} MB plaintext, median of {a.repeats} runs each:")
        print(f"  raw decryption      {r_raw:7.3f} s  {mb / r_raw:6.0f} MB/s  (baseline)")
        print(
            f"  decrypt + SHA-256   {r_hash:7.3f} s  {mb / r_hash:6.0f} MB/s  {r_raw / r_hash:.2f}x raw (the manifest's hashes)"
        )
        print(
            f"  format floor        {r_floor:7.3f} s  {mb / r_floor:6.0f} MB/s  {r_raw / r_floor:.2f}x raw "
            "(+ file SHA-256 + CRC-32, one thread)"
        )
        print(f"  join (in process)   {r_join:7.3f} s  {mb / r_join:6.0f} MB/s  {r_raw / r_join:.2f}x raw")
        print(
            f"  export (HTTP, zip)  {r_exp:7.3f} s  {mb / r_exp:6.0f} MB/s  {r_raw / r_exp:.2f}x raw  (httpx)"
        )
        r_curl = statistics.median(t_curl)
        print(
            f"  export (HTTP, zip)  {r_curl:7.3f} s  {mb / r_curl:6.0f} MB/s  {r_raw / r_curl:.2f}x raw  "
            f"(curl; {statistics.median(curl_wall):.3f} s wall with its start)"
        )
        print(
            f"  ffmpeg concat       {r_cat:7.3f} s  {mb / r_cat:6.0f} MB/s  {r_raw / r_cat:.2f}x raw (fallback)"
        )

        for (piece, client), (t_send, wall) in sends.items():
            tail = f"; {wall:.3f} s wall with its start" if client == "curl" else ""
            print(
                f"  HTTP transport      {t_send:7.3f} s  {mb / t_send:6.0f} MB/s  {r_raw / t_send:.2f}x raw  "
                f"({client}, {piece / (1 << 20):g} MiB pieces{tail}; the zip's bytes from memory)"
            )

        # An outside tool checks the exported MP4: decodes with no error, every frame there.
        with zipfile.ZipFile(last_zip) as z:
            mp4s = [n for n in z.namelist() if n.endswith(".mp4")]
            (work / "run.mp4").write_bytes(z.read(mp4s[0]))
        err = subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-i", str(work / "run.mp4"), "-f", "null", "-"],
                             capture_output=True).stderr  # fmt: skip
        got = tools.count_frames(work / "run.mp4")
        print(
            f"exported {mp4s}: ffmpeg decode errors: {len(err.splitlines())}; "
            f"frames {got} (segments' sum {clip_frames * len(segs)})"
        )
    finally:
        srv.terminate()
        srv.wait(10)
        v.close()
        shutil.rmtree(scratch, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)
    return 0


def transport(size: int, repeats: int, pieces: list[int]) -> dict[tuple[int, str], tuple[float, float]]:
    """Medians for `size` bytes from memory through uvicorn + StreamingResponse, in each piece
    size, to httpx and to curl taking turns: {(piece, client): (seconds, wall seconds)}."""
    out: dict[tuple[int, str], tuple[float, float]] = {}
    for piece in pieces:
        port = free_port()
        url = f"http://127.0.0.1:{port}/bytes"
        body = io.BytesIO()
        cmd = [sys.executable, "-c", TRANSPORT_SERVER, str(size), str(piece), str(port)]
        with subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) as server:
            try:
                with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=600) as c:
                    for _ in range(600):  # polling the server's start (bench, not a test)
                        try:
                            fetch(c, "/bytes", body)
                            break
                        except httpx.TransportError:
                            time.sleep(0.1)
                    curl(url, {}, size)  # warm-up
                    t_httpx: list[float] = []
                    t_curl: list[tuple[float, float]] = []
                    for i in range(repeats):
                        for client in ("httpx", "curl")[:: 1 if i % 2 else -1]:
                            if client == "curl":
                                t_curl.append(curl(url, {}, size))
                                continue
                            t0 = time.perf_counter()
                            fetch(c, "/bytes", body)
                            t_httpx.append(time.perf_counter() - t0)
                            if body.tell() != size:
                                raise RuntimeError(f"transport baseline sent {body.tell()} bytes, not {size}")
            finally:
                server.terminate()  # and the with-block waits for it
        th = statistics.median(t_httpx)
        out[(piece, "httpx")] = (th, th)
        out[(piece, "curl")] = (
            statistics.median(x for x, _ in t_curl),
            statistics.median(w for _, w in t_curl),
        )
    return out


if __name__ == "__main__":
    os.environ.setdefault("PYTHONPATH", str(REPO))
    sys.exit(main())
