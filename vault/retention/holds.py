"""Legal holds: evidence that must outlive its retention deadline, and nothing can delete.

A hold names sources and a time range (or explicit segments). It is evaluated by query at the
moment something wants to delete (`held_clause`), never copied onto segments, so a hold on a range
also covers segments ingested into that range later, and releasing it needs no bulk update.
Like an S3 Object Lock legal hold it is independent of the deadline; like Milestone's evidence
lock it may have an end (`until`); an indefinite hold is allowed but always carries a reason.
Every change is appended to the access log in the same transaction as the change itself, and
the log's head is signed right after it (a checkpoint), whichever process made the change.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy import and_, exists, or_, select
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from vault.errors import HoldfastError
from vault.index.schema import Hold, HoldSegment, HoldSource, Segment, Source
from vault.ledger.ledgers import AccessLog
from vault.ops.logsetup import event
from vault.timeutil import iso

log = logging.getLogger("holdfast.holds")

#: The role that may release a hold (the API maps its accounts onto this).
RELEASE_PERMISSION = "hold.release"
#: Session.info key: holds changed in this transaction, whose S3 legal holds the vault sets
#: after the commit (vault.store.legalholds.sync_holds).
CHANGED = "holdfast.holds_changed"


def _changed(session: Session, hold_id: str) -> None:
    session.info.setdefault(CHANGED, set()).add(hold_id)


class HoldError(HoldfastError):
    """A hold request that cannot be honoured as given (bad range, unknown source, no reason)."""


class PermissionDenied(HoldfastError):
    """The actor lacks the permission the action needs."""


class SegmentHeld(HoldfastError):
    """A held segment was asked to be deleted: refused, whoever asked."""


def active_clause(now: datetime) -> ColumnElement[bool]:
    return and_(Hold.released_at.is_(None), or_(Hold.until.is_(None), Hold.until > now))


def held_clause(now: datetime) -> ColumnElement[bool]:
    """SQL true for a Segment row covered by an active hold (ranges inclusive at both ends)."""
    act = active_clause(now)
    by_segment = exists(
        select(1)
        .select_from(HoldSegment)
        .join(Hold, Hold.id == HoldSegment.hold_id)
        .where(HoldSegment.segment_id == Segment.id, act)
    )
    by_range = exists(
        select(1)
        .select_from(HoldSource)
        .join(Hold, Hold.id == HoldSource.hold_id)
        .where(
            HoldSource.source == Segment.source,
            act,
            Hold.start <= Segment.end,
            Hold.end >= Segment.start,
        )
    )
    return or_(by_segment, by_range)


def holds_covering(session: Session, seg: Segment, now: datetime) -> list[Hold]:
    """The active holds that cover one segment (for refusals and reports)."""
    act = active_clause(now)
    q1 = (
        select(Hold)
        .join(HoldSegment, HoldSegment.hold_id == Hold.id)
        .where(HoldSegment.segment_id == seg.id, act)
    )
    q2 = (
        select(Hold)
        .join(HoldSource, HoldSource.hold_id == Hold.id)
        .where(HoldSource.source == seg.source, act, Hold.start <= seg.end, Hold.end >= seg.start)
    )
    found = {h.id: h for h in session.scalars(q1)}
    found.update({h.id: h for h in session.scalars(q2)})
    return list(found.values())


def is_held(session: Session, segment_id: str, now: datetime) -> bool:
    """The check every delete path (API, CLI, purger) must make; the purger makes it in SQL."""
    return bool(session.scalar(select(held_clause(now)).where(Segment.id == segment_id)))


def hold_dict(h: Hold, session: Session) -> dict[str, Any]:
    sources = sorted(session.scalars(select(HoldSource.source).where(HoldSource.hold_id == h.id)))
    segs = sorted(session.scalars(select(HoldSegment.segment_id).where(HoldSegment.hold_id == h.id)))
    return {
        "id": h.id,
        "sources": sources,
        "segments": segs,
        "from": iso(h.start) if h.start else None,
        "to": iso(h.end) if h.end else None,
        "reason": h.reason,
        "incident": h.incident,
        "created_by": h.created_by,
        "created_at": iso(h.created_at),
        "until": iso(h.until) if h.until else None,
        "released_at": iso(h.released_at) if h.released_at else None,
        "released_by": h.released_by,
        "release_reason": h.release_reason,
    }


def add_hold(
    session: Session,
    access_log: AccessLog,
    *,
    actor: str,
    role: str,
    reason: str,
    now: datetime,
    sources: list[str] | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    segment_ids: list[str] | None = None,
    incident: str | None = None,
    until: datetime | None = None,
    known_sources: set[str] | None = None,
) -> Hold:
    """Place a hold (in the caller's transaction, logged in the access log, head signed).

    `known_sources`: the configured sources (the index knows only those that delivered footage);
    a source retired from the config but still in the index can be held too.
    """
    reason = (reason or "").strip()
    if not reason:
        raise HoldError("a hold needs a reason (why this footage must outlive its deadline)")
    if not actor:
        raise HoldError("a hold needs the user who places it")
    sources = sorted(set(sources or []))
    segment_ids = sorted(set(segment_ids or []))
    if not sources and not segment_ids:
        raise HoldError("a hold needs --source with --from/--to, or named segments")
    if sources:
        if start is None or end is None:
            raise HoldError("a hold on sources needs both --from and --to")
        if end < start:
            raise HoldError(f"hold range ends ({iso(end)}) before it starts ({iso(start)})")
        known = set(session.scalars(select(Source.id).where(Source.id.in_(sources))))
        known |= known_sources or set()
        unknown = [s for s in sources if s not in known]
        if unknown:
            raise HoldError(f"unknown source(s) {', '.join(unknown)}: not cameras or lines of this vault")
    if segment_ids:
        known = set(session.scalars(select(Segment.id).where(Segment.id.in_(segment_ids))))
        missing = [s for s in segment_ids if s not in known]
        if missing:
            raise HoldError(f"no segment(s) {', '.join(missing)} in the index (already purged, or a typo)")
    if until is not None and until <= now:
        raise HoldError(f"--until {iso(until)} is not in the future; a hold that ended is no hold")
    h = Hold(
        id=uuid.uuid4().hex[:16],
        start=start if sources else None,
        end=end if sources else None,
        reason=reason,
        incident=incident,
        created_by=actor,
        created_at=now,
        until=until,
    )
    session.add(h)
    session.flush()
    for s in sources:
        session.add(HoldSource(hold_id=h.id, source=s))
    for sid in segment_ids:
        session.add(HoldSegment(hold_id=h.id, segment_id=sid))
    session.flush()
    _changed(session, h.id)
    access_log.record(
        session,
        user=actor,
        role=role,
        action="hold.add",
        purpose=reason,
        at=now,
        source=",".join(sources) or None,
        start=h.start,
        end=h.end,
        hold=h.id,
        incident=incident,
        until=iso(until) if until else None,
        segments=segment_ids or None,
    )
    access_log.seal(session, now)
    event(log, "hold.added", hold=h.id, actor=actor, sources=",".join(sources), incident=incident or "")
    return h


def release_hold(
    session: Session,
    access_log: AccessLog,
    hold_id: str,
    *,
    actor: str,
    role: str,
    reason: str,
    now: datetime,
    allowed: Callable[[str, str], bool],
) -> Hold:
    """Release a hold. `allowed(actor, permission)` is the caller's authorisation (the API: the dpo role).

    A refusal is logged too (committed on its own): an attempt to release evidence is itself
    evidence. Call this before making other changes in `session`.
    """
    reason = (reason or "").strip()
    h = session.get(Hold, hold_id)
    if h is None:
        raise HoldError(f"no hold with id {hold_id!r} (see `holdfast hold list`)")
    if not allowed(actor, RELEASE_PERMISSION):
        # Its own transaction: the caller's rolls back with the exception, the record must not.
        access_log.record(
            None,
            user=actor,
            role=role,
            action="hold.release",
            purpose=reason or "(none)",
            at=now,
            result="denied",
            hold=hold_id,
        )
        raise PermissionDenied(
            f"{actor} lacks the {RELEASE_PERMISSION!r} permission needed to release a hold"
        )
    if not reason:
        raise HoldError("releasing a hold needs a reason")
    if h.released_at is not None:
        raise HoldError(f"hold {hold_id} was already released at {iso(h.released_at)} by {h.released_by}")
    h.released_at, h.released_by, h.release_reason = now, actor, reason
    _changed(session, h.id)
    access_log.record(
        session, user=actor, role=role, action="hold.release", purpose=reason, at=now, hold=hold_id
    )
    access_log.seal(session, now)
    event(log, "hold.released", hold=hold_id, actor=actor, reason=reason)
    return h


def expire_holds(session: Session, access_log: AccessLog, now: datetime) -> list[str]:
    """Holds whose `until` has passed become released, explicitly and logged (the purger calls this)."""
    done: list[str] = []
    for h in session.scalars(
        select(Hold).where(Hold.released_at.is_(None), Hold.until.is_not(None), Hold.until <= now)
    ):
        assert h.until is not None
        h.released_at, h.released_by = now, "holdfast-purge"
        h.release_reason = f"hold period ended at {iso(h.until)}"
        _changed(session, h.id)
        access_log.record(
            session,
            user="holdfast-purge",
            role="system",
            action="hold.expire",
            purpose=h.release_reason,
            at=now,
            hold=h.id,
        )
        event(log, "hold.expired", hold=h.id, until=iso(h.until))
        done.append(h.id)
    if done:
        access_log.seal(session, now)
    return done


def list_holds(session: Session, include_released: bool = True) -> list[Hold]:
    q = select(Hold).order_by(Hold.created_at)
    if not include_released:
        q = q.where(Hold.released_at.is_(None))
    return list(session.scalars(q))
