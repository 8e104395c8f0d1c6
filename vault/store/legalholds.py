"""Holds mirrored as S3 Object Lock legal holds, so the bucket itself refuses to delete held footage.

The index stays the authority (`holds.held_clause`); the store's legal hold is a second lock
that also binds anyone who holds the bucket's credentials. Order: a hold change commits in the
index first, then the objects it touches get legal hold ON or OFF (`sync_holds`, run after the
commit). A crash between the two leaves drift in the safe direction for placing (the index
already refuses the purge) and, for releasing, an object still locked that the purger unlocks
before deleting it (it deletes only rows it has checked are unheld). `find_drift` walks every
stored segment and compares; `repair_drift` mends what it finds (`holdfast check --repair-holds`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import and_, select
from sqlalchemy.orm import Session

from vault.index.schema import Hold, HoldSegment, HoldSource, Segment
from vault.ops.logsetup import event
from vault.retention import holds

if TYPE_CHECKING:
    from vault.vault import Vault

log = logging.getLogger("holdfast.legalholds")

#: Segments looked at per index query when walking the whole store.
PAGE = 1000
#: Concurrent legal-hold requests (each is one small HTTP call).
WORKERS = 8


@dataclass(frozen=True)
class Drift:
    segment: str
    key: str
    version: str | None
    held: bool  # what the index says
    legal_hold: bool  # what the store says

    def describe(self) -> str:
        want = "ON" if self.held else "OFF"
        have = "ON" if self.legal_hold else "OFF"
        return f"segment {self.segment} ({self.key}): index wants legal hold {want}, the store has {have}"


def held_flags(session: Session, segment_ids: list[str], now: datetime) -> dict[str, bool]:
    """segment id -> covered by an active hold now (stored rows only)."""
    if not segment_ids:
        return {}
    rows = session.execute(
        select(Segment.id, holds.held_clause(now)).where(
            Segment.id.in_(segment_ids), Segment.state == "stored"
        )
    ).all()
    return {sid: bool(h) for sid, h in rows}


def segments_of_holds(session: Session, hold_ids: Iterable[str]) -> list[str]:
    """Every stored segment a hold names or whose range it covers, active or not."""
    ids = list(set(hold_ids))
    if not ids:
        return []
    by_seg = select(HoldSegment.segment_id).where(HoldSegment.hold_id.in_(ids))
    by_range = (
        select(Segment.id)
        .join(HoldSource, HoldSource.source == Segment.source)
        .join(Hold, Hold.id == HoldSource.hold_id)
        .where(Hold.id.in_(ids), and_(Hold.start <= Segment.end, Hold.end >= Segment.start))
    )
    out = set(session.scalars(by_seg)) | set(session.scalars(by_range))
    return sorted(out)


def _apply(vault: Vault, items: list[tuple[str, str | None, bool]]) -> None:
    store = vault.store

    def one(item: tuple[str, str | None, bool]) -> None:
        key, version, on = item
        store.set_legal_hold(key, version, on)

    if len(items) <= 2:
        for it in items:
            one(it)
        return
    with ThreadPoolExecutor(WORKERS) as ex:
        list(ex.map(one, items))


def sync_segments(vault: Vault, segment_ids: Iterable[str], now: datetime | None = None) -> int:
    """Set each stored segment's legal hold to what the index says now; returns how many were set."""
    if not vault.store.supports_legal_holds:
        return 0
    ids = sorted(set(segment_ids))
    now = now or vault.clock()
    n = 0
    for i in range(0, len(ids), PAGE):
        page = ids[i : i + PAGE]
        with vault.sessions() as s:
            flags = held_flags(s, page, now)
            rows = s.execute(
                select(Segment.id, Segment.storage_key, Segment.storage_version).where(
                    Segment.id.in_(list(flags))
                )
            ).all()
        _apply(vault, [(key, ver, flags[sid]) for sid, key, ver in rows])
        n += len(rows)
    return n


def sync_holds(vault: Vault, hold_ids: Iterable[str]) -> int:
    """After a hold was placed, released or expired (committed): bring its segments' legal holds along."""
    if not vault.store.supports_legal_holds:
        return 0
    with vault.sessions() as s:
        ids = segments_of_holds(s, hold_ids)
    n = sync_segments(vault, ids)
    event(log, "legalholds.synced", holds=",".join(sorted(set(hold_ids))), segments=n)
    return n


def _walk(vault: Vault, now: datetime) -> Iterator[list[tuple[str, str, str | None, bool]]]:
    last = ""
    while True:
        with vault.sessions() as s:
            rows = s.execute(
                select(Segment.id, Segment.storage_key, Segment.storage_version, holds.held_clause(now))
                .where(Segment.state == "stored", Segment.id > last)
                .order_by(Segment.id)
                .limit(PAGE)
            ).all()
        if not rows:
            return
        yield [(sid, key, ver, bool(h)) for sid, key, ver, h in rows]
        last = rows[-1][0]


def find_drift(vault: Vault, now: datetime | None = None) -> list[Drift]:
    """Stored segments whose object's legal hold differs from the index's holds (empty on a local store)."""
    if not vault.store.supports_legal_holds:
        return []
    now = now or vault.clock()
    store = vault.store
    out: list[Drift] = []
    with ThreadPoolExecutor(WORKERS) as ex:
        for page in _walk(vault, now):
            states = list(ex.map(lambda r: store.legal_hold(r[1], r[2]), page))
            for (sid, key, ver, held), lh in zip(page, states, strict=True):
                if held != lh:
                    out.append(Drift(sid, key, ver, held, lh))
    return out


def repair_drift(vault: Vault, now: datetime | None = None) -> list[Drift]:
    """Find drift and mend it (legal hold set to what the index says); returns what was mended."""
    found = find_drift(vault, now)
    _apply(vault, [(d.key, d.version, d.held) for d in found])
    for d in found:
        event(log, "legalholds.repaired", logging.WARNING, segment=d.segment, key=d.key, now_on=d.held)
    return found


def is_covered_now(session: Session, source: str, start: datetime, end: datetime, now: datetime) -> bool:
    """Would a segment of `source` over [start, end] be held now (range holds only: it has no id yet)?"""
    q = (
        select(Hold.id)
        .join(HoldSource, HoldSource.hold_id == Hold.id)
        .where(
            HoldSource.source == source,
            holds.active_clause(now),
            Hold.start <= end,
            Hold.end >= start,
        )
        .limit(1)
    )
    return session.scalar(q) is not None
