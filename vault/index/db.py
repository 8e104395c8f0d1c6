"""The index's engine and sessions: connecting, SQLite's pragmas, the write lock, migrations.

Nothing here is SQLite-only: SQLite (WAL) is the one-box default, PostgreSQL the scale-out.
The schema is owned by Alembic migrations in vault/migrations; `migrate()` brings any database
to head. The models that map it are in vault/index/schema.py.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, event
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
