"""The index's connections: pings only after idle, reads outside a transaction, writes inside one.

A pooled PostgreSQL connection is pinged at checkout only when it sat idle longer than
`ping_after_idle` (vault.index.db.make_engine): a backend killed under an idle connection is
replaced without the caller seeing it, one killed under a recently used connection fails the one
statement that finds it dead. SQLite is never pinged. The API's token check and search run on
`Vault.reader` (autocommit, no BEGIN/ROLLBACK around them), and a write through `Vault.sessions`
on the same pooled connection afterwards is still a transaction. All on the real databases.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, event, exc, insert, select, text, update

from api.app import create_app
from tests.support.accounts import add_user, h, log_in
from tests.support.appliance import Appliance
from tests.support.postgres import PostgresCluster
from tests.support.wait import wait_for
from vault.index.db import make_engine
from vault.index.schema import ApiSession, Segment, Source

T0 = datetime(2026, 11, 1, 8, tzinfo=UTC)


def dbapi_autocommit(dbapi_conn: Any) -> bool:
    """Whether the driver's connection runs each statement on its own (no BEGIN before it)."""
    if isinstance(dbapi_conn, sqlite3.Connection):
        return dbapi_conn.isolation_level is None
    return bool(dbapi_conn.autocommit)


# -- pings only after idle (PostgreSQL) -----------------------------------------------------------


def backend_pid(engine: Engine) -> int:
    with engine.connect() as c:
        return int(c.execute(text("SELECT pg_backend_pid()")).scalar_one())


def terminate(cluster: PostgresCluster, pid: int) -> None:
    """Kill a backend from another connection and wait until the server has reaped it."""
    with psycopg.connect(
        f"host=127.0.0.1 port={cluster.port} user=app dbname=postgres", autocommit=True
    ) as c:
        assert c.execute("SELECT pg_terminate_backend(%s)", (pid,)).fetchone() == (True,)

        def gone() -> bool:
            return c.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone() == (
                0,
            )

        assert wait_for(gone, timeout=60), f"backend {pid} still running after pg_terminate_backend"


def test_a_dropped_idle_connection_is_replaced_at_checkout(postgres_cluster: PostgresCluster) -> None:
    engine = make_engine(postgres_cluster.create_database(), ping_after_idle=0)
    try:
        first = backend_pid(engine)  # the pool keeps this connection, idle since its checkin
        terminate(postgres_cluster, first)
        # Idle longer than 0 s: pinged at checkout, found dead, replaced; the caller sees nothing.
        second = backend_pid(engine)
        assert second != first
        assert engine.pool.checkedout() == 0 and engine.pool.checkedin() == 1
    finally:
        engine.dispose()


def test_a_dropped_busy_connection_fails_one_statement_then_the_pool_reconnects(
    postgres_cluster: PostgresCluster,
) -> None:
    """The trade-off of not pinging a connection used within the threshold: the statement that
    finds it dead fails (as a disconnect, so the pool discards it) and the next one succeeds."""
    engine = make_engine(postgres_cluster.create_database(), ping_after_idle=3600)
    try:
        first = backend_pid(engine)
        terminate(postgres_cluster, first)
        with pytest.raises(exc.DBAPIError) as failed:
            backend_pid(engine)
        assert failed.value.connection_invalidated, failed.value
        assert isinstance(failed.value, exc.OperationalError)
        second = backend_pid(engine)
        assert second != first
    finally:
        engine.dispose()


def test_sqlite_is_never_pinged(tmp_path: Path) -> None:
    """Every statement SQLite runs, from its own trace hook: a checkout adds none (no ping),
    even with a threshold that would ping every PostgreSQL checkout."""
    engine = make_engine(f"sqlite:///{tmp_path / 'index.sqlite'}", ping_after_idle=0)
    ran: list[str] = []
    event.listen(engine, "connect", lambda dbapi_conn, _record: dbapi_conn.set_trace_callback(ran.append))
    try:
        for _ in range(3):
            with engine.connect() as c:
                ran.append("-- checked out")
                c.execute(text("SELECT 42")).scalar_one()
        assert engine.pool.checkedin() == 1  # one connection, checked out three times
        assert ran == ["-- checked out", "SELECT 42"] * 3
    finally:
        engine.dispose()


# -- reads outside a transaction, writes inside one (SQLite and PostgreSQL) ----------------------


def test_a_write_after_an_autocommit_read_on_the_same_connection_is_a_transaction(
    db_appliance: Appliance,
) -> None:
    """The pool gives a connection back its default isolation when `reader` returns it: a write
    session that fails after inserting leaves nothing behind."""
    with db_appliance.vault() as v:
        with v.reads() as s:
            s.execute(select(Source.id)).all()
            read_conn = s.connection().connection.dbapi_connection
            assert dbapi_autocommit(read_conn)
        with pytest.raises(RuntimeError, match="abandon"), v.sessions.begin() as s:
            write_conn = s.connection().connection.dbapi_connection
            assert write_conn is read_conn  # the pool's one connection: the case in question
            assert not dbapi_autocommit(write_conn)
            s.add(Source(id="cam-x", kind="camera", site="demo", retention_class="office-camera"))
            s.flush()
            raise RuntimeError("abandon the write")
        with v.sessions() as s:
            assert s.scalars(select(Source.id).where(Source.id == "cam-x")).all() == []
        with v.reader.connect() as c:
            assert c.connection.dbapi_connection is read_conn
            assert dbapi_autocommit(c.connection.dbapi_connection)


def segment_row(i: int, start: datetime) -> dict[str, Any]:
    return {
        "id": f"seg-{i:04d}",
        "source": "office-1",
        "kind": "video",
        "start": start,
        "end": start + timedelta(seconds=10),
        "duration": 10.0,
        "plaintext_bytes": 1000 + i,
        "stored_bytes": 1100,
        "sha256": "0" * 64,
        "retention_class": "office-camera",
        "deadline": T0 + timedelta(days=14),
        "storage_key": f"office-1/{i}",
        "state": "stored",
        "key_id": "k1",
        "envelope": b"x" * 10,
        "cut_short": False,
        "meta": {"mime": "video/mp4"},
        "ingested_at": T0,
    }


@dataclass
class Site:
    app: Appliance
    client: TestClient
    engine: Engine
    token: str
    pg_log: Path | None  # the PostgreSQL server's log, or None on SQLite


@pytest.fixture
def site(db_appliance: Appliance, request: pytest.FixtureRequest) -> Iterator[Site]:
    """Six indexed segments of office-1 and a logged-in security user; on PostgreSQL the server
    logs every statement this database receives."""
    app = db_appliance
    add_user(app, "sec", "security", "demo")
    url = app.cfg.database.url
    pg_log = None
    if url.startswith("postgresql"):
        cluster: PostgresCluster = request.getfixturevalue("postgres_cluster")
        with psycopg.connect(url, autocommit=True) as c:
            c.execute(f"ALTER DATABASE \"{url.rsplit('/', 1)[1]}\" SET log_statement = 'all'")
        pg_log = cluster.dir / "log"
    with app.vault() as v, v.engine.begin() as c:
        c.execute(
            insert(Source).values(id="office-1", kind="camera", site="demo", retention_class="office-camera")
        )
        c.execute(insert(Segment), [segment_row(i, T0 + timedelta(seconds=10 * i)) for i in range(6)])
    with TestClient(create_app(app.cfg)) as client:
        token = log_in(client, ["sec"])["sec"]
        yield Site(app, client, client.app.state.holdfast.vault.engine, token, pg_log)  # type: ignore[attr-defined]


#: Where a PostgreSQL log entry starts (the default log_line_prefix, '%m [%p] ').
PG_ENTRY = re.compile(r"^(?=\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+ \S+ \[\d+\] )", re.M)
#: A statement as PostgreSQL logs it with log_statement = 'all' (simple or extended protocol).
PG_STATEMENT = re.compile(r"LOG:  (?:statement|execute [^:]+): (.*)", re.S)


def pg_statements(log: Path, offset: int) -> list[str]:
    """Statements logged after `offset`, whole (a statement may span lines); a backend writes
    its line before it answers, so every statement of a request that has returned is there."""
    with log.open(encoding="utf-8", errors="replace") as f:
        f.seek(offset)
        entries = PG_ENTRY.split(f.read())
    return [m.group(1).strip() for e in entries if (m := PG_STATEMENT.search(e)) is not None]


def search(site: Site) -> list[str]:
    a, b = T0 + timedelta(seconds=15), T0 + timedelta(seconds=45)
    r = site.client.get(
        "/api/v1/segments",
        params={"source": "office-1", "start": a.isoformat(), "end": b.isoformat()},
        headers=h({"sec": site.token}, "sec"),
    )
    assert r.status_code == 200, r.text
    return [x["id"] for x in r.json()]


def test_a_search_reads_outside_a_transaction(site: Site) -> None:
    seen: list[tuple[str, bool]] = []

    def record(conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        table = next((t for t in ("api_sessions", "segments") if t in statement), None)
        if table is not None:
            seen.append((table, dbapi_autocommit(conn.connection.dbapi_connection)))

    event.listen(site.engine, "before_cursor_execute", record)
    offset = site.pg_log.stat().st_size if site.pg_log is not None else 0
    try:
        assert search(site) == ["seg-0001", "seg-0002", "seg-0003", "seg-0004"]
    finally:
        event.remove(site.engine, "before_cursor_execute", record)
    # The token check, then the route's two range scans (before the range, inside it).
    assert seen == [("api_sessions", True), ("segments", True), ("segments", True)]
    if site.pg_log is not None:
        sent = [s for s in pg_statements(site.pg_log, offset) if s != ";"]  # ";": an idle connection's ping
        assert len(sent) == 3 and "api_sessions" in sent[0], sent
        assert all("segments" in s for s in sent[1:]), sent
        assert not [s for s in sent if s.split()[0].upper() in ("BEGIN", "COMMIT", "ROLLBACK")], sent


def test_an_expired_token_is_refused_and_deleted(site: Site) -> None:
    """The token check runs on the autocommit reader; its one write, deleting an expired token,
    is a single statement that commits on its own."""
    with site.engine.begin() as c:
        assert c.execute(update(ApiSession).values(expires_at=T0 - timedelta(days=1))).rowcount == 1
    r = site.client.get(
        "/api/v1/segments", params={"source": "office-1"}, headers=h({"sec": site.token}, "sec")
    )
    assert r.status_code == 401, r.text
    with site.engine.connect() as c:
        assert c.execute(select(ApiSession.token_sha256)).all() == []
