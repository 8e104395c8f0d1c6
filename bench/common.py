"""What several benchmarks set up the same way: a fresh appliance, indexed footage, a logged-in
API client, and purge-log entries shaped like real ones. Imported after the benchmark has put the repository on `sys.path`."""

from __future__ import annotations

import contextlib
import hashlib
import shutil
import tempfile
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from tests.support.appliance import Appliance, make_appliance
from vault.store.ingest import Ingestor
from vault.store.spool import SpoolSegment
from vault.timeutil import iso
from vault.vault import Vault


@contextlib.contextmanager
def scratch_dir(prefix: str, parent: str | Path | None = None) -> Iterator[Path]:
    """A fresh directory (under `parent`, or the system's temp dir) for one benchmark run, removed
    after it, also when the run fails: benchmarks write gigabytes."""
    d = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


def site(base: Path, *, clock_sync: bool = True) -> Appliance:
    """`holdfast init` in base/site; `clock_sync=False` lets a loaded benchmark box purge
    without a synchronised clock."""
    app = make_appliance(base / "site")
    if not clock_sync:
        text = app.config_path.read_text()
        app.config_path.write_text(text.replace("require_clock_sync = true", "require_clock_sync = false"))
    return app


def purge_fields(i: int, t0: datetime) -> dict[str, Any]:
    """The fields of the i-th purge-log entry of a camera recording 10 s segments from t0
    (about 500 bytes once written, like a real one)."""
    s = t0 + timedelta(seconds=10 * i)
    return {
        "log": "purge",
        "segment": hashlib.md5(str(i).encode()).hexdigest(),  # noqa: S324 - an id, not security
        "source": "office-1",
        "class": "office-camera",
        "start": iso(s),
        "end": iso(s + timedelta(seconds=10)),
        "sha256": hashlib.sha256(str(i).encode()).hexdigest(),
        "stored_bytes": 5_000_000,
        "deadline": iso(s + timedelta(days=14, seconds=10)),
        "purged_at": iso(s + timedelta(days=14, seconds=70)),
        "reason": "expired",
        "policy_version": "ffc830d980484465",
        "purger_version": "holdfast-purge/0.1.0",
    }


def ingest_clips(v: Vault, source: str, start: datetime, n: int, clip: Path) -> None:
    """n back-to-back 10 s segments of `clip` from `source` from `start`, sealed and indexed."""
    data = clip.read_bytes()
    for i in range(n):
        st = start + timedelta(seconds=10 * i)
        seg = SpoolSegment(
            v.cfg.paths.spool, v.seal_public, {"source": source, "kind": "video", "start": iso(st)}
        )
        seg.write(data)
        seg.close({"end": iso(st + timedelta(seconds=10)), "duration": 10.0, "end_reason": "bench"})
    Ingestor(v).scan()


def bearer_when_up(base: str, user: str, password: str) -> dict[str, str]:
    """Wait (up to about a minute) for `holdfast serve` at `base` to answer, then log `user` in:
    the Authorization header for its requests."""
    for _ in range(600):
        with contextlib.suppress(httpx.HTTPError):
            httpx.get(base + "/healthz", timeout=1)
            break
        time.sleep(0.1)  # polling the server's start (bench, not a test)
    r = httpx.post(base + "/api/v1/auth/token", data={"username": user, "password": password}, timeout=60)
    return {"Authorization": f"Bearer {r.json()['access_token']}"}
