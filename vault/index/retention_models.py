"""Index tables for retention enforcement: holds, the two audit logs, checkpoints, purger state.

Kept out of vault/index/db.py so the foundation's models stay as they were; the schema itself is
owned by the Alembic revision 0002_retention, these models only map it.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from vault.index.db import Base, UTCDateTime


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


class HoldSource(Base):
    __tablename__ = "hold_sources"
    hold_id: Mapped[str] = mapped_column(String(32), ForeignKey("holds.id"), primary_key=True)
    source: Mapped[str] = mapped_column(String(64), primary_key=True)
    __table_args__ = (Index("ix_hold_sources_source", "source"),)


class HoldSegment(Base):
    __tablename__ = "hold_segments"
    hold_id: Mapped[str] = mapped_column(String(32), ForeignKey("holds.id"), primary_key=True)
    segment_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    __table_args__ = (Index("ix_hold_segments_segment", "segment_id"),)


class PurgeLogRow(Base):
    """One purge-log leaf; `entry` is the exact canonical JSON that was hashed."""

    __tablename__ = "purge_log"
    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    segment_id: Mapped[str] = mapped_column(String(64), unique=True)
    reason: Mapped[str] = mapped_column(String(32))
    purged_at: Mapped[datetime] = mapped_column(UTCDateTime())
    entry: Mapped[str] = mapped_column(Text)
    leaf_hash: Mapped[str] = mapped_column(String(64))


class AccessLogRow(Base):
    """One access-log leaf (views, exports, hold changes)."""

    __tablename__ = "access_log"
    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    action: Mapped[str] = mapped_column(String(64))
    user: Mapped[str] = mapped_column(String(200))
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    entry: Mapped[str] = mapped_column(Text)
    leaf_hash: Mapped[str] = mapped_column(String(64))


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


class PurgePending(Base):
    """Segments marked for purge (state 'purging', envelope already NULL) and why: what a restart finishes."""

    __tablename__ = "purge_pending"
    segment_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    reason: Mapped[str] = mapped_column(String(32))
    marked_at: Mapped[datetime] = mapped_column(UTCDateTime())


class PurgerState(Base):
    """Small persistent facts: last purge run time (clock guard), store-full alert."""

    __tablename__ = "purger_state"
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)
