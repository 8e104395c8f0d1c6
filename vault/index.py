"""Queries on the index: "this source, this time range", one segment, gaps; and their JSON form."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from vault.db import Gap, Segment
from vault.timeutil import iso


def segments_in_range(
    session: Session,
    source: str | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    limit: int | None = None,
    meta: dict[str, str] | None = None,
) -> list[Segment]:
    """Segments overlapping [start, end), oldest first; served by ix_segments_source_start.

    `meta` filters on top-level string fields of the segment meta (calls: agent, direction,
    call_id, line). SQLAlchemy's JSON path operators render as json_extract on SQLite and ->> on
    PostgreSQL, so the same query runs on both and the limit applies after the filter.
    """
    q = select(Segment)
    if source is not None:
        q = q.where(Segment.source == source)
    for key, value in (meta or {}).items():
        q = q.where(Segment.meta[key].as_string() == value)
    if end is not None:
        q = q.where(Segment.start < end)
    if start is not None:
        q = q.where(Segment.end > start)
    q = q.order_by(Segment.source, Segment.start)
    if limit is not None:
        q = q.limit(limit)
    return list(session.scalars(q))


def gaps_in_range(
    session: Session,
    source: str | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
) -> list[Gap]:
    q = select(Gap)
    if source is not None:
        q = q.where(Gap.source == source)
    if end is not None:
        q = q.where(Gap.start < end)
    if start is not None:
        q = q.where(Gap.end > start)
    return list(session.scalars(q.order_by(Gap.source, Gap.start)))


def segment_dict(seg: Segment, full: bool = False) -> dict[str, Any]:
    d: dict[str, Any] = {
        "id": seg.id,
        "source": seg.source,
        "kind": seg.kind,
        "start": iso(seg.start),
        "end": iso(seg.end),
        "duration": seg.duration,
        "deadline": iso(seg.deadline),
        "retention_class": seg.retention_class,
        "cut_short": seg.cut_short,
        "meta": seg.meta,
    }
    if full:
        d.update(
            {
                "bytes": seg.plaintext_bytes,
                "stored_bytes": seg.stored_bytes,
                "sha256": seg.sha256,
                "storage_key": seg.storage_key,
                "storage_version": seg.storage_version,
                "state": seg.state,
                "key_id": seg.key_id,
                "key_present": seg.envelope is not None,
                "ingested_at": iso(seg.ingested_at),
            }
        )
    return d
