"""The index's schema: every table Holdfast keeps, as SQLAlchemy 2 models, in one place.

The schema itself is owned by the Alembic migrations in vault/migrations; these models map it,
and `Base.metadata` is what tests/test_schema.py compares the migrated database against (on
SQLite and PostgreSQL). Engine and session setup live in vault/index/db.py; the rules that use
these tables live with their domain (vault/retention, vault/ledger, vault/people, ...).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    TypeDecorator,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC in Python, naive UTC in the database: the same on SQLite and PostgreSQL."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the index; use timezone-aware UTC")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


class Base(DeclarativeBase):
    pass


# -- recordings: what was recorded, where it is stored, and the holes ----------------------


# A camera or call line, with its site and retention class.
class Source(Base):
    __tablename__ = "sources"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))  # camera | line
    site: Mapped[str] = mapped_column(String(64))
    retention_class: Mapped[str] = mapped_column(String(64))


#: What a search, timeline or playlist reads of a segment, beyond the (source, start) it seeks by.
COVER = ("end", "id", "kind", "duration", "cut_short", "plaintext_bytes", "meta")


# One sealed recording segment: its time range, stored blob, deadline and key envelope.
class Segment(Base):
    __tablename__ = "segments"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    source: Mapped[str] = mapped_column(String(64), ForeignKey("sources.id"))
    kind: Mapped[str] = mapped_column(String(16))  # video | audio
    start: Mapped[datetime] = mapped_column(UTCDateTime())
    end: Mapped[datetime] = mapped_column(UTCDateTime())
    duration: Mapped[float] = mapped_column(Float)
    plaintext_bytes: Mapped[int] = mapped_column(BigInteger)
    stored_bytes: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))  # of the stored (ciphertext) blob
    retention_class: Mapped[str] = mapped_column(String(64))
    deadline: Mapped[datetime] = mapped_column(UTCDateTime())
    storage_key: Mapped[str] = mapped_column(String(512))
    #: The object version in an S3 store (Object Lock buckets are versioned); None on the local store.
    storage_version: Mapped[str | None] = mapped_column(String(1024), nullable=True, default=None)
    state: Mapped[str] = mapped_column(String(16), default="stored")  # stored | purging
    key_id: Mapped[str] = mapped_column(String(16))
    #: The wrapped segment key, detached from the blob at ingest; NULL once crypto-shredded.
    envelope: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    cut_short: Mapped[bool] = mapped_column(Boolean, default=False)
    meta: Mapped[dict[str, Any]] = mapped_column(JSON)
    ingested_at: Mapped[datetime] = mapped_column(UTCDateTime())

    __table_args__ = (
        # The search, timeline and playlist range scans read only SEARCH_COLUMNS, so this index
        # answers them alone (SQLite "USING COVERING INDEX", PostgreSQL "Index Only Scan"):
        # no table row is visited. SQLite has no INCLUDE, so the extra columns are trailing keys;
        # PostgreSQL keys on (source, start) and carries the rest (json has no btree order).
        Index("ix_segments_source_start", "source", "start", *COVER).ddl_if(dialect="sqlite"),
        Index("ix_segments_source_start", "source", "start", postgresql_include=list(COVER)).ddl_if(
            dialect="postgresql"
        ),
        Index("ix_segments_state_deadline", "state", "deadline"),
    )


# A stretch of a source with no recording, and why.
class Gap(Base):
    """A stretch with no recording and why (Moonfire's end_reason): makes holes explainable."""

    __tablename__ = "gaps"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    source: Mapped[str] = mapped_column(String(64), ForeignKey("sources.id"))
    start: Mapped[datetime] = mapped_column(UTCDateTime())
    end: Mapped[datetime] = mapped_column(UTCDateTime())
    reason: Mapped[str] = mapped_column(Text)

    __table_args__ = (Index("ix_gaps_source_start", "source", "start"),)


# -- retention: legal holds, the purge queue and the purger's state --------------------------


# A legal hold on a range of sources or on listed segments.
class Hold(Base):
    """A legal hold: independent of the deadline; active until released or its `until` passes."""

    __tablename__ = "holds"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    #: A range hold covers [start, end] of every listed source (also segments ingested later);
    #: a segment hold has no range and lists its segments in hold_segments.
    start: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    end: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    reason: Mapped[str] = mapped_column(Text)
    incident: Mapped[str | None] = mapped_column(String(200), nullable=True)
    created_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    until: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    released_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    released_by: Mapped[str | None] = mapped_column(String(200), nullable=True)
    release_reason: Mapped[str | None] = mapped_column(Text, nullable=True)


# The sources a range hold covers.
class HoldSource(Base):
    __tablename__ = "hold_sources"
    hold_id: Mapped[str] = mapped_column(String(32), ForeignKey("holds.id"), primary_key=True)
    source: Mapped[str] = mapped_column(String(64), primary_key=True)
    __table_args__ = (Index("ix_hold_sources_source", "source"),)


# The segments a segment hold lists.
class HoldSegment(Base):
    __tablename__ = "hold_segments"
    hold_id: Mapped[str] = mapped_column(String(32), ForeignKey("holds.id"), primary_key=True)
    segment_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    __table_args__ = (Index("ix_hold_segments_segment", "segment_id"),)


# Segments marked for purge that a restart finishes purging.
class PurgePending(Base):
    """Segments marked for purge (state 'purging', envelope already NULL) and why: what a restart finishes."""

    __tablename__ = "purge_pending"
    segment_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    reason: Mapped[str] = mapped_column(String(32))
    marked_at: Mapped[datetime] = mapped_column(UTCDateTime())


# The purger's small persistent facts (last run, store-full alert).
class PurgerState(Base):
    """Small persistent facts: last purge run time (clock guard), store-full alert."""

    __tablename__ = "purger_state"
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


# -- the tamper-evident ledgers: entries, heads and signed checkpoints -------------------------


# The purge ledger's entries, one per purged segment.
class PurgeLogRow(Base):
    """One purge-log leaf; `entry` is the exact canonical JSON that was hashed."""

    __tablename__ = "purge_log"
    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    segment_id: Mapped[str] = mapped_column(String(64), unique=True)
    reason: Mapped[str] = mapped_column(String(32))
    purged_at: Mapped[datetime] = mapped_column(UTCDateTime())
    entry: Mapped[str] = mapped_column(Text)
    leaf_hash: Mapped[str] = mapped_column(String(64))


# The access ledger's entries: views, exports, hold and account changes.
class AccessLogRow(Base):
    """One access-log leaf (views, exports, hold changes)."""

    __tablename__ = "access_log"
    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    action: Mapped[str] = mapped_column(String(64))
    user: Mapped[str] = mapped_column(String(200))
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    entry: Mapped[str] = mapped_column(Text)
    leaf_hash: Mapped[str] = mapped_column(String(64))


# Each ledger's head (size, tail hash, Merkle frontier): what the next entry chains to.
class LogHead(Base):
    """The head of one tamper-evident log (`purge` or `access`): what the next append chains to.

    Appenders lock this row (vault.ledger.ledgers) and update it in the transaction that writes the
    entry, so seq and prev are never taken from memory. `frontier` is the Merkle accumulator's
    state (vault.ledger.merkle.MerkleAccumulator.frontier(), hex hashes concatenated), so a checkpoint
    signs the root without re-reading the log.
    """

    __tablename__ = "log_heads"
    log: Mapped[str] = mapped_column(String(16), primary_key=True)
    size: Mapped[int] = mapped_column(BigInteger)
    #: Leaf hash (hex) of entry size-1: the next entry's `prev`; NULL while the log is empty.
    tail: Mapped[str | None] = mapped_column(String(64), nullable=True)
    frontier: Mapped[str] = mapped_column(Text)


# Signed checkpoints of each ledger at a tree size.
class CheckpointRow(Base):
    """A signed checkpoint of one log (`purge` or `access`) at a tree size."""

    __tablename__ = "log_checkpoints"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    log: Mapped[str] = mapped_column(String(16))
    size: Mapped[int] = mapped_column(BigInteger)
    root: Mapped[str] = mapped_column(String(64))
    time: Mapped[datetime] = mapped_column(UTCDateTime())
    origin: Mapped[str] = mapped_column(String(200))
    key_id: Mapped[str] = mapped_column(String(16))
    signature: Mapped[str] = mapped_column(String(200))
    __table_args__ = (Index("ix_log_checkpoints_log_size", "log", "size"),)


# -- people: accounts, sessions, cases, requests and approvals ---------------------------------


# Accounts: name, role, sites, argon2id password hash, lockout state.
class User(Base):
    __tablename__ = "users"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[str] = mapped_column(String(16))
    sites: Mapped[list[str]] = mapped_column(JSON)
    password_hash: Mapped[str] = mapped_column(String(255))
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    failed_logins: Mapped[int] = mapped_column(Integer, default=0)
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


# Logins (cookie sessions and bearer tokens), by the SHA-256 of the token.
class ApiSession(Base):
    """A login: a browser session cookie or a bearer token for scripts (`kind`)."""

    __tablename__ = "api_sessions"
    token_sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(Integer, ForeignKey("users.id"))
    kind: Mapped[str] = mapped_column(String(16))  # cookie | bearer
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())

    __table_args__ = (Index("ix_api_sessions_user", "user_id"),)


# Incidents and subject requests are cases: opened by someone, holding footage until closed.
class HeldCase:
    """The columns of a case that holds footage while open: the hold, and who opened it and who
    closed it, when and why (closing releases the hold with that reason)."""

    hold_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    opened_by: Mapped[str] = mapped_column(String(64))
    closed_by: Mapped[str | None] = mapped_column(String(64), nullable=True)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    close_reason: Mapped[str | None] = mapped_column(Text, nullable=True)


# Incidents: a site's cameras over a time range, held while open.
class Incident(HeldCase, Base):
    """A case: site, cameras, time range; opening one places a legal hold on its footage."""

    __tablename__ = "incidents"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    site: Mapped[str] = mapped_column(String(64))
    cameras: Mapped[list[str]] = mapped_column(JSON)
    start: Mapped[datetime] = mapped_column(UTCDateTime())
    end: Mapped[datetime] = mapped_column(UTCDateTime())
    description: Mapped[str] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(16), default="open")  # open | closed
    opened_at: Mapped[datetime] = mapped_column(UTCDateTime())
    notes: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)

    __table_args__ = (Index("ix_incidents_site", "site"),)


# Data subjects' access requests (GDPR art. 15) and their exports.
class SubjectRequest(HeldCase, Base):
    """A data subject's access request: the record the DPO answers against a deadline.

    It names who asks (a description, not an account), whether and how their identity was
    verified, the sources and time range they were in, and the day it must be answered by
    (`api.subject_request_days`). Opening one places a legal hold on that footage so it survives
    until answered; answering it releases the hold with a reason.
    """

    __tablename__ = "subject_requests"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    subject: Mapped[str] = mapped_column(Text)
    identity_verified: Mapped[bool] = mapped_column(Boolean, default=False)
    identity_note: Mapped[str] = mapped_column(Text, default="")
    #: The DPO who recorded the identity check, and when: every export names them.
    identity_verified_by: Mapped[str | None] = mapped_column(String(64), nullable=True)
    identity_verified_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    sources: Mapped[list[str]] = mapped_column(JSON)
    start: Mapped[datetime] = mapped_column(UTCDateTime())
    end: Mapped[datetime] = mapped_column(UTCDateTime())
    received_at: Mapped[datetime] = mapped_column(UTCDateTime())
    deadline: Mapped[datetime] = mapped_column(UTCDateTime())
    state: Mapped[str] = mapped_column(String(16), default="open")  # open | answered
    #: One entry per export: who, when, blur mode, sources (no footage, no file hashes needed here).
    exports: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)

    __table_args__ = (Index("ix_subject_requests_state", "state"),)


# Four-eyes approval requests, their decisions and break-glass grants.
class ApprovalRow(Base):
    __tablename__ = "approvals"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    requester: Mapped[str] = mapped_column(String(64))
    requester_role: Mapped[str] = mapped_column(String(16))
    action: Mapped[str] = mapped_column(String(16))
    sources: Mapped[list[str]] = mapped_column(JSON)
    sites: Mapped[list[str]] = mapped_column(JSON)
    start: Mapped[datetime] = mapped_column(UTCDateTime())
    end: Mapped[datetime] = mapped_column(UTCDateTime())
    purpose: Mapped[str] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    #: Approved or break glass: access until then; pending: the request lapses then.
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    decided_by: Mapped[str | None] = mapped_column(String(64), nullable=True)
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)

    __table_args__ = (
        Index("ix_approvals_requester", "requester", "state"),
        Index("ix_approvals_state", "state", "created_at"),
    )


# View tickets: one logged view covering its segment fetches, by the SHA-256 of the ticket.
class ViewTicketRow(Base):
    __tablename__ = "view_tickets"
    token_sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(Integer)
    source: Mapped[str] = mapped_column(String(64))
    segment_ids: Mapped[list[str]] = mapped_column(JSON)
    #: Seconds each segment's decode times move to, so a playlist plays as one timeline (api.hls).
    shifts: Mapped[dict[str, float]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())

    __table_args__ = (
        Index("ix_view_tickets_user", "user_id", "created_at"),
        Index("ix_view_tickets_expires", "expires_at"),
    )
