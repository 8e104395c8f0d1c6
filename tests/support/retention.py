"""Helpers for the retention tests: an injected clock, fast real segments, config tweaks."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from tests.support.appliance import Appliance
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
