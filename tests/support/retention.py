"""Helpers for the retention tests: an injected clock, fast real segments, config tweaks."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from tests.support.appliance import Appliance
from vault.retention import holds
from vault.store.ingest import Ingestor
from vault.store.spool import SpoolSegment
from vault.timeutil import iso
from vault.vault import Vault


@dataclass
class Clock:
    """The injected clock: tests move it; nothing sleeps."""

    now: datetime

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kw: float) -> None:
        self.now += timedelta(**kw)


def set_purge(app: Appliance, **settings: object) -> None:
    text = app.config_path.read_text("utf-8")
    for k, val in settings.items():
        rendered = str(val).lower() if isinstance(val, bool) else str(val)
        line = f"{k} = {rendered}"
        text, n = re.subn(rf"^#? ?{k} = .*$", line, text, flags=re.M)
        if n == 0:
            text = text.replace("[purge]\n", f"[purge]\n{line}\n")
    app.config_path.write_text(text, "utf-8")


def set_store(app: Appliance, path: str) -> None:
    text = app.config_path.read_text("utf-8")
    text = re.sub(r'^store = ".*"$', f'store = "{path}"', text, flags=re.M)
    app.config_path.write_text(text, "utf-8")


def make_segments(
    v: Vault,
    source: str,
    start: datetime,
    count: int,
    seconds: float = 10.0,
    payload: bytes = b"holdfast-test-media" * 8,
) -> list[str]:
    """Seal real segments into the spool and ingest them through the real ingest path."""
    ids = []
    for i in range(count):
        s = start + timedelta(seconds=seconds * i)
        seg = SpoolSegment(
            v.cfg.paths.spool, v.seal_public, {"source": source, "kind": "video", "start": iso(s)}
        )
        seg.write(payload)
        seg.close({"end": iso(s + timedelta(seconds=seconds)), "duration": seconds, "end_reason": "test"})
        ids.append(seg.segment_id)
    st = Ingestor(v).scan()
    assert st.indexed == count, st
    return ids


def hold_add_cli(
    app: Appliance, source: str, start: datetime, end: datetime, reason: str, *more: str, check: bool = True
) -> subprocess.CompletedProcess[bytes]:
    """`holdfast hold add` on `source` over [start, end) as an operator types it; `more` adds options
    (--incident, --user, --until)."""
    rng = ["--from", iso(start), "--to", iso(end)]
    return app.cli("hold", "add", "--source", source, *rng, "--reason", reason, *more, check=check)


def place_hold(
    v: Vault,
    reason: str,
    *,
    actor: str = "officer",
    role: str = "staff",
    now: datetime | None = None,
    **scope: Any,
) -> str:
    """Place a legal hold through the vault's rules in a transaction of its own, at the vault's clock
    unless `now` is given; its id. `scope` is what it holds (sources with start and end, segment_ids,
    incident, until, known_sources), as `holds.add_hold` takes it."""
    with v.sessions.begin() as s:
        hold = holds.add_hold(
            s, v.access_log, actor=actor, role=role, reason=reason, now=now or v.clock(), **scope
        )
        return hold.id


def release_hold(
    v: Vault,
    hold_id: str,
    reason: str,
    *,
    actor: str = "dpo",
    role: str = "dpo",
    now: datetime | None = None,
    allowed: Callable[[str, str], bool] = lambda actor, permission: True,
) -> None:
    """Release a hold (by the DPO unless `actor` and `role` say otherwise) in a transaction of its own,
    at the vault's clock unless `now` is given; `allowed` is the caller's authorisation."""
    with v.sessions.begin() as s:
        holds.release_hold(
            s,
            v.access_log,
            hold_id,
            actor=actor,
            role=role,
            reason=reason,
            now=now or v.clock(),
            allowed=allowed,
        )
