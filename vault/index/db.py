"""The index's engine and sessions: connecting, SQLite's pragmas, the write lock, migrations.

Nothing here is SQLite-only: SQLite (WAL) is the one-box default, PostgreSQL the scale-out.
The schema is owned by Alembic migrations in vault/migrations; `migrate()` brings any database
to head. The models that map it are in vault/index/schema.py.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, event, exc
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker


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


#: A pooled PostgreSQL connection idle for longer than this (seconds) is pinged before use.
PING_AFTER_IDLE = 1.0


def make_engine(url: str, ping_after_idle: float = PING_AFTER_IDLE) -> Engine:
    """WAL + synchronous=FULL on SQLite: an indexed row survives a power cut, readers never block ingest.

    PostgreSQL: a pooled connection that sat idle for `ping_after_idle` seconds is pinged at
    checkout and replaced if the server dropped it (a restart, a failover, an idle timeout), so
    the first request after a quiet spell does not fail. One used more recently is not pinged:
    a ping on every checkout was a round trip on every API request, twice (token check, then
    the route). The price: a server restart inside that second fails the statement that finds
    the connection dead, and SQLAlchemy then discards every connection opened before it.
    SQLite has no server to lose and is never pinged.
    """
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    engine = create_engine(url, future=True)
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    else:
        _ping_idle_connections(engine, ping_after_idle)
    return engine


def _ping_idle_connections(engine: Engine, after: float) -> None:
    """SQLAlchemy's pessimistic disconnect handling, for connections idle longer than `after`."""
    dialect = engine.dialect

    def checkin(_dbapi_conn: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    def checkout(dbapi_conn: Any, record: Any, _proxy: Any) -> None:
        since = record.info.get("idle_since")
        if since is None or time.monotonic() - since < after:
            return  # just opened, or just used
        try:
            dialect.do_ping(dbapi_conn)
        except dialect.loaded_dbapi.Error as e:
            if dialect.is_disconnect(e, dbapi_conn, None):
                # The pool discards this connection and checks out (or opens) another.
                raise exc.DisconnectionError(f"pooled connection was dropped by the server: {e}") from e
            raise

    event.listen(engine, "checkin", checkin)
    event.listen(engine, "checkout", checkout)


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
