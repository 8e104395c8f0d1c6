"""View tickets: one logged view (an HLS playlist, a call's `<audio>`) covers its segment fetches.

A ticket lives in the index, not in one API process's memory, so any API worker process can
serve the fetches of a view another one logged. Only the SHA-256 of the random ticket is stored
(as for session tokens). A ticket is bound to its user and its segments, expires after
TICKET_MINUTES, and a user holds at most `per_user` of them: issuing one more drops that user's
oldest, so tickets cannot pile up without bound.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from vault.index.schema import ViewTicketRow

TICKET_MINUTES = 60


@dataclass(frozen=True)
class ViewTicket:
    user_id: int
    source: str
    segment_ids: frozenset[str]
    expires: datetime
    shifts: dict[str, float] = field(default_factory=dict, compare=False, hash=False)


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def issue(
    session: Session,
    user_id: int,
    source: str,
    segment_ids: set[str],
    now: datetime,
    per_user: int,
    shifts: dict[str, float] | None = None,
) -> tuple[str, datetime]:
    """A new ticket (returned once, stored hashed) and its expiry; expired and surplus tickets go."""
    session.execute(delete(ViewTicketRow).where(ViewTicketRow.expires_at <= now))
    held = session.scalar(select(func.count()).where(ViewTicketRow.user_id == user_id)) or 0
    if held >= per_user:
        oldest = select(ViewTicketRow.token_sha256).where(ViewTicketRow.user_id == user_id)
        oldest = oldest.order_by(ViewTicketRow.created_at, ViewTicketRow.token_sha256).limit(
            held - per_user + 1
        )
        session.execute(delete(ViewTicketRow).where(ViewTicketRow.token_sha256.in_(oldest.scalar_subquery())))
    token = secrets.token_urlsafe(24)
    expires = now + timedelta(minutes=TICKET_MINUTES)
    session.add(
        ViewTicketRow(
            token_sha256=_digest(token),
            user_id=user_id,
            source=source,
            segment_ids=sorted(segment_ids),
            shifts=dict(shifts or {}),
            created_at=now,
            expires_at=expires,
        )
    )
    return token, expires


def lookup(session: Session, token: str, now: datetime) -> ViewTicket | None:
    row = session.get(ViewTicketRow, _digest(token))
    if row is None or row.expires_at <= now:
        return None
    return ViewTicket(
        row.user_id, row.source, frozenset(row.segment_ids), row.expires_at, dict(row.shifts or {})
    )


def count(session: Session, user_id: int | None = None) -> int:
    q = select(func.count()).select_from(ViewTicketRow)
    if user_id is not None:
        q = q.where(ViewTicketRow.user_id == user_id)
    return int(session.scalar(q) or 0)
