"""What several benchmarks set up the same way: a fresh appliance, and purge-log entries shaped
like real ones. Imported after the benchmark has put the repository on `sys.path`."""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from tests.support.appliance import Appliance, make_appliance
from vault.timeutil import iso


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
