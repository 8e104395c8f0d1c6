"""The search and timeline range scans read ix_segments_source_start alone, on SQLite and PostgreSQL.

The statements are the ones `find_segments` really sends (captured from the engine), explained
by the database itself: SQLite's `EXPLAIN QUERY PLAN` says USING COVERING INDEX, PostgreSQL's
EXPLAIN says Index Only Scan. Loading every row (no `columns`) is shown to need the table, so the
check can fail.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, event, insert

from api.footage import LISTING_COLUMNS, seg_fields
from vault.index.db import make_engine, migrate, session_factory
from vault.index.queries import find_segments, first_start, last_end
from vault.index.schema import Segment, Source

T0 = datetime(2026, 11, 1, tzinfo=UTC)
ROWS = 20_000


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'index.db'}"
    else:
        url = request.getfixturevalue("postgres_cluster").create_database()
    e = make_engine(url)
    migrate(e)
    rows = [
        {
            "id": f"seg-{i:06d}",
            "source": "cam-a" if i % 2 else "cam-b",
            "kind": "video",
            "start": T0 + timedelta(seconds=10 * i),
            "end": T0 + timedelta(seconds=10 * i + 10),
            "duration": 10.0,
            "plaintext_bytes": 1000,
            "stored_bytes": 1100,
            "sha256": "0" * 64,
            "retention_class": "office-camera",
            "deadline": T0 + timedelta(days=14),
            "storage_key": f"cam/{i}",
            "state": "stored",
            "key_id": "k1",
            "envelope": b"x" * 100,
            "cut_short": False,
            "meta": {"mime": "video/mp4"},
            "ingested_at": T0,
        }
        for i in range(ROWS)
    ]
    with e.begin() as c:
        for src in ("cam-a", "cam-b"):
            c.execute(
                insert(Source).values(id=src, kind="camera", site="demo", retention_class="office-camera")
            )
        c.execute(insert(Segment), rows)
    if e.dialect.name == "postgresql":  # statistics, and the visibility map index-only scans need
        with e.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
            c.exec_driver_sql("VACUUM ANALYZE segments")
    else:
        with e.begin() as c:
            c.exec_driver_sql("ANALYZE")
    yield e
    e.dispose()


def captured(e: Engine, run: Any) -> list[tuple[str, Any]]:
    """The (statement, parameters) `run()` sends to the database."""
    sent: list[tuple[str, Any]] = []

    def keep(_conn: Any, _cursor: Any, statement: str, parameters: Any, _ctx: Any, _many: bool) -> None:
        sent.append((statement, parameters))

    event.listen(e, "before_cursor_execute", keep)
    try:
        run()
    finally:
        event.remove(e, "before_cursor_execute", keep)
    return [x for x in sent if x[0].lstrip().upper().startswith("SELECT")]


def plan(e: Engine, statement: str, parameters: Any) -> str:
    prefix = "EXPLAIN QUERY PLAN " if e.dialect.name == "sqlite" else "EXPLAIN "
    with e.connect() as c:
        return "\n".join(
            " ".join(str(x) for x in row) for row in c.exec_driver_sql(prefix + statement, parameters)
        )


def covered(e: Engine, text: str) -> bool:
    if e.dialect.name == "sqlite":
        return "USING COVERING INDEX ix_segments_source_start" in text
    return re.search(r"Index Only Scan (Backward )?using ix_segments_source_start", text) is not None


def test_search_and_timeline_scans_read_the_covering_index_alone(engine: Engine) -> None:
    sessions = session_factory(engine)
    a, b = T0 + timedelta(hours=10), T0 + timedelta(hours=11)
    out: list[Any] = []

    def search() -> None:
        with sessions() as s:
            found = find_segments(s, "cam-a", a, b, 1000, columns=LISTING_COLUMNS)
            out.extend(seg_fields(x) for x in found)  # reads nothing more: no lazy load
            first_start(s, "cam-a")
            last_end(s, "cam-a")

    sent = captured(engine, search)
    assert len(out) == 180 and out[0]["mime"] == "video/mp4"
    assert len(sent) == 4, [x[0] for x in sent]  # before a, inside [a, b), first start, last end
    for statement, parameters in sent:
        text = plan(engine, statement, parameters)
        assert covered(engine, text), f"{statement}\n-> {text}"

    def whole_rows() -> None:
        with sessions() as s:
            find_segments(s, "cam-a", a, b, 1000)

    for statement, parameters in captured(engine, whole_rows):
        assert not covered(engine, plan(engine, statement, parameters))
