"""Queries on the index: "this source, this time range", one segment, gaps; and their JSON form."""

from __future__ import annotations

from collections import namedtuple
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Integer, Select, bindparam, func, select
from sqlalchemy.orm import Session

from vault.index.schema import Gap, Segment
from vault.timeutil import iso

#: How many segments starting before a range are checked for overlapping into it.
PRECEDING = 8
#: The most segments one query returns unless the caller asks for more (or for all: None).
MAX_SEGMENTS = 5000
#: Holes between consecutive segments shorter than this are encoder jitter, not gaps.
GAP_TOLERANCE = 1.0


#: What a listing of segments (the API's search and timeline) reads: all of it is in
#: ix_segments_source_start, so those scans read the covering index and never visit a row.
LISTING_COLUMNS = (
    Segment.id,
    Segment.source,
    Segment.kind,
    Segment.meta,
    Segment.start,
    Segment.end,
    Segment.duration,
    Segment.cut_short,
    Segment.plaintext_bytes,
)


def find_segments(
    session: Session,
    source: str | None,
    a: datetime | None,
    b: datetime | None,
    limit: int | None = MAX_SEGMENTS,
    meta: dict[str, str] | None = None,
    columns: Sequence[Any] = (),
) -> list[Any]:
    """Segments of `source` overlapping [a, b), oldest first, in two index range scans.

    A plain `start < b AND end > a` filter reads every earlier row of the source (millions at
    scale). Here: the few segments starting just before `a` (a camera's segments follow one
    another, so only the last ones can reach into the range) plus those starting in [a, b),
    both served by ix_segments_source_start. `meta` filters on top-level string fields of the
    segment meta (calls: agent, direction, call_id, remote/remote_hash); SQLAlchemy's JSON path
    operators render as json_extract on SQLite and ->> on PostgreSQL, so the same query runs on
    both and the limit applies after the filter. An open end (`a` or `b` None) is unbounded.
    With `source` None, every indexed source in turn, ordered by source then start.

    Without `columns`: Segment entities. With `columns` (LISTING_COLUMNS): named tuples of just
    those columns, fields named as the Segment attributes; the scans then read the covering index
    alone, and no ORM instance is built (a listing runs on every search request).
    """
    if source is None:
        out: list[Any] = []
        for src in indexed_sources(session):
            rest = None if limit is None else limit - len(out)
            out += find_segments(session, src, a, b, rest, meta, columns)
            if limit is not None and len(out) >= limit:
                break
        return out
    before_q, inside_q, listed = _range_statements(
        tuple(columns), a is not None, b is not None, limit is not None, tuple(meta or ())
    )
    params: dict[str, Any] = {"source": source, "a": a, "b": b, "limit": limit}
    params.update((f"wanted_{i}", v) for i, v in enumerate((meta or {}).values()))
    if listed is not None:
        run = session.connection().execute
        before = list(map(listed, run(before_q, params))) if a is not None else []
        inside = list(map(listed, run(inside_q, params)))
    else:
        before = list(session.scalars(before_q, params)) if a is not None else []
        inside = list(session.scalars(inside_q, params))
    found = [x for x in reversed(before) if x.end > a] + inside
    return found if limit is None else found[:limit]


_Shape = tuple[Select[Any], Select[Any], Callable[[Any], Any] | None]
#: Shapes differ by which bounds and meta keys a caller filters on: a handful in practice; the
#: cap keeps arbitrary meta keys (a CLI filter) from growing the cache without end.
_MAX_SHAPES = 64
_RANGE_STATEMENTS: dict[tuple[Any, ...], _Shape] = {}


def _range_statements(
    columns: tuple[Any, ...], bounded_a: bool, bounded_b: bool, limited: bool, meta_keys: tuple[str, ...]
) -> _Shape:
    """find_segments' two statements, built once per shape with bound parameters (building a
    select and its cache key cost more than the index scans themselves); with `columns`, the
    named tuple each row becomes (a field read is a C slot, where a SQLAlchemy Row attribute
    costs a Python lookup, and a listing reads ten of them per row)."""
    key = (columns, bounded_a, bounded_b, limited, meta_keys)
    found = _RANGE_STATEMENTS.get(key)
    if found is not None:
        return found
    base = select(*columns) if columns else select(Segment)
    conds = [Segment.source == bindparam("source")]
    conds += [Segment.meta[k].as_string() == bindparam(f"wanted_{i}") for i, k in enumerate(meta_keys)]
    before = (
        base.where(*conds, Segment.start < bindparam("a")).order_by(Segment.start.desc()).limit(PRECEDING)
    )
    inside = base.where(*conds)
    if bounded_a:
        inside = inside.where(Segment.start >= bindparam("a"))
    if bounded_b:
        inside = inside.where(Segment.start < bindparam("b"))
    inside = inside.order_by(Segment.start)
    if limited:
        inside = inside.limit(bindparam("limit", type_=Integer))
    listed = namedtuple("Listed", [c.key for c in columns])._make if columns else None
    shape = (before, inside, listed)
    if len(_RANGE_STATEMENTS) < _MAX_SHAPES:
        _RANGE_STATEMENTS[key] = shape
    return shape


def indexed_sources(session: Session) -> list[str]:
    """Every source with an indexed segment, in order: one index seek per source (a skip scan),
    not a read of every row."""
    seg = Segment.__table__
    walk = select(func.min(seg.c.source).label("source")).cte("walk", recursive=True)
    step = select(func.min(seg.c.source)).where(seg.c.source > walk.c.source).scalar_subquery()
    walk = walk.union_all(select(step).where(walk.c.source.is_not(None)))
    return [x for x in session.scalars(select(walk.c.source)) if x is not None]


def exportable_segments(session: Session, source: str, a: datetime, b: datetime) -> list[Segment]:
    """Segments of [a, b) that can still be opened (key not shredded), detached from the session
    so an export can stream them after it closes."""
    segs = [x for x in find_segments(session, source, a, b) if x.envelope is not None]
    for x in segs:
        session.expunge(x)
    return segs


def first_start(session: Session, source: str) -> datetime | None:
    """When the source's oldest indexed segment starts (one index seek)."""
    return session.scalar(
        select(Segment.start).where(Segment.source == source).order_by(Segment.start).limit(1)
    )


def last_end(session: Session, source: str) -> datetime | None:
    """Where the source's newest indexed segment ends (the last few by start, one index seek)."""
    ends = session.scalars(
        select(Segment.end).where(Segment.source == source).order_by(Segment.start.desc()).limit(PRECEDING)
    )
    return max(ends, default=None)


def coverage_gaps(
    session: Session, source: str, segs: list[Segment], a: datetime, b: datetime
) -> list[dict[str, Any]]:
    """Recorded gaps (with the recorder's reason) plus any other hole in coverage, explained as unknown.

    `segs` are the source's segments in [a, b) (find_segments). Each gap is a dict with source,
    start and end (ISO 8601), duration (seconds) and reason: the form timelines and export
    manifests show. Time before the source's first recording still held is not a gap: nothing
    was expected then (the camera did not exist yet, or its older footage was purged as promised).
    """
    recorded = gaps_in_range(session, source, a, b)
    first = first_start(session, source)
    if first is None:
        first = b
    if first > a:
        recorded = [g for g in recorded if g.end > first]
        a = min(first, b)
    gaps = [
        {
            "source": source,
            "start": iso(max(g.start, a)),
            "end": iso(min(g.end, b)),
            "duration": (min(g.end, b) - max(g.start, a)).total_seconds(),
            "reason": g.reason,
        }
        for g in recorded
    ]
    covered = [(g.start, g.end) for g in recorded]
    cursor = a
    holes: list[tuple[datetime, datetime]] = []
    for seg in segs:
        if (seg.start - cursor).total_seconds() > GAP_TOLERANCE:
            holes.append((cursor, seg.start))
        cursor = max(cursor, seg.end)
    if (b - cursor).total_seconds() > GAP_TOLERANCE:
        holes.append((cursor, b))
    for h0, h1 in holes:
        if any(
            c0 <= h0 + timedelta(seconds=GAP_TOLERANCE) and c1 >= h1 - timedelta(seconds=GAP_TOLERANCE)
            for c0, c1 in covered
        ):
            continue
        gaps.append(
            {
                "source": source,
                "start": iso(h0),
                "end": iso(h1),
                "duration": (h1 - h0).total_seconds(),
                "reason": "no recording (reason not recorded)",
            }
        )
    gaps.sort(key=lambda g: g["start"])
    return gaps


def index_summary(session: Session) -> tuple[int, datetime | None, datetime | None]:
    """How many segments are indexed, the oldest start and the newest end (None when empty)."""
    n = session.scalar(select(func.count()).select_from(Segment)) or 0
    lo, hi = session.execute(select(func.min(Segment.start), func.max(Segment.end))).one()
    return n, lo, hi


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
