"""The index: SQLAlchemy 2 models for sources, segments and gaps, and engine setup.

Nothing here is SQLite-only: SQLite (WAL) is the one-box default, PostgreSQL the scale-out.
The schema is owned by Alembic migrations in vault/migrations; `migrate()` brings any database
to head, and `Base.metadata` exists only so the models and the migration can be compared in tests.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    LargeBinary,
    String,
    Text,
    TypeDecorator,
    create_engine,
    event,
)
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker


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


class Source(Base):
    __tablename__ = "sources"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))  # camera | line
    site: Mapped[str] = mapped_column(String(64))
    retention_class: Mapped[str] = mapped_column(String(64))


#: What a search, timeline or playlist reads of a segment, beyond the (source, start) it seeks by.
COVER = ("end", "id", "kind", "duration", "cut_short", "plaintext_bytes", "meta")


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


class Gap(Base):
    """A stretch with no recording and why (Moonfire's end_reason): makes holes explainable."""

    __tablename__ = "gaps"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    source: Mapped[str] = mapped_column(String(64), ForeignKey("sources.id"))
    start: Mapped[datetime] = mapped_column(UTCDateTime())
    end: Mapped[datetime] = mapped_column(UTCDateTime())
    reason: Mapped[str] = mapped_column(Text)

    __table_args__ = (Index("ix_gaps_source_start", "source", "start"),)


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=FULL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    # Crypto-shredding: a purged segment's key envelope must not linger in free pages.
    cur.execute("PRAGMA secure_delete=ON")
    cur.close()


def begin_write(session: Session) -> None:
    """Make the caller's transaction the one writer before it reads what it will write against.

    SQLite: pysqlite opens a transaction only at the first INSERT/UPDATE/DELETE, so reads before
    that see whatever was committed at that moment and a later write would be based on them.
    `BEGIN IMMEDIATE` takes the database's write lock now (waiting up to busy_timeout); a
    transaction that has already written holds that lock already. PostgreSQL: nothing to do
    here; lock the rows the transaction reads with `SELECT ... FOR UPDATE`
    (`.with_for_update()`, which SQLite ignores).
    """
    conn = session.connection()
    if conn.dialect.name == "sqlite" and not conn.connection.dbapi_connection.in_transaction:  # type: ignore[union-attr]
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def make_engine(url: str) -> Engine:
    """WAL + synchronous=FULL on SQLite: an indexed row survives a power cut, readers never block ingest."""
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    engine = create_engine(url, future=True, pool_pre_ping=True)
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    return engine


MIGRATIONS = Path(__file__).parent.parent / "migrations"


def alembic_config(engine: Engine) -> Any:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["engine"] = engine
    return cfg


def migrate(engine: Engine, progress: Callable[[int, int], None] | None = None) -> None:
    """Bring the schema to head; safe to run at every daemon start.

    `progress(done, total)` is called before the first and after each applied revision, only
    when there is something to apply (a terminal's progress bar; see cli/progress.py).
    """
    from alembic import command

    cfg = alembic_config(engine)
    if progress is not None:
        from alembic.script import ScriptDirectory

        current = current_revision(engine)
        script = ScriptDirectory.from_config(cfg)
        at_head = current == script.get_current_head()
        pending = [] if at_head else list(script.iterate_revisions("head", current or "base"))
        if pending:
            done = [0]
            progress(0, len(pending))

            def step(**_: Any) -> None:
                done[0] += 1
                progress(done[0], len(pending))

            cfg.attributes["on_version_apply"] = step
    command.upgrade(cfg, "head")


def current_revision(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def head_revision(engine: Engine) -> str | None:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config(engine)).get_current_head()


def session_factory(engine: Engine) -> sessionmaker[Any]:
    return sessionmaker(engine, expire_on_commit=False, future=True)
