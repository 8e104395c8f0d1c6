"""Search and timeline answers are written by orjson from plain rows (api.footage.listing_json),
not through a pydantic model per row: the bytes must be exactly what the documented response model
(SegmentOut) writes, for every kind of row the index holds, on SQLite and PostgreSQL, and the
listing must be the same segments whether read as rows or as ORM entities.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from pydantic import TypeAdapter
from sqlalchemy import Engine, insert

from api.footage import LISTING_COLUMNS, SegmentOut, listing_json, seg_fields
from tests.support.appliance import Appliance
from vault.index.db import session_factory
from vault.index.queries import find_segments
from vault.index.schema import Segment, Source
from vault.timeutil import iso

T0 = datetime(2026, 11, 1, 8, tzinfo=UTC)

CALL_META = {
    "line": "list-cs1",
    "call_id": "c-17",
    "agent": "ana",
    "direction": "in",
    "remote_hash": "ab" * 16,
    "part": 2,
    "call_start": "2026-11-01T07:59:30Z",
    "call_duration": 95.5,
    "pauses": [
        {"offset": 3.25, "start": "2026-11-01T08:00:03Z", "end": "2026-11-01T08:00:20Z", "seconds": 17}
    ],
}


def row(
    i: int, source: str, kind: str, meta: dict[str, Any], start: datetime, cut: bool = False
) -> dict[str, Any]:
    return {
        "id": f"{source}-{i:04d}",
        "source": source,
        "kind": kind,
        "start": start,
        "end": start + timedelta(seconds=9.5),
        "duration": 9.5,
        "plaintext_bytes": 1_234_567 + i,
        "stored_bytes": 1_300_000,
        "sha256": "0" * 64,
        "retention_class": "office-camera",
        "deadline": T0 + timedelta(days=14),
        "storage_key": f"{source}/{i}",
        "state": "stored",
        "key_id": "k1",
        "envelope": b"x" * 10,
        "cut_short": cut,
        "meta": meta,
        "ingested_at": T0,
    }


@pytest.fixture
def engine(db_appliance: Appliance) -> Iterator[Engine]:
    v = db_appliance.vault()
    e = v.engine
    rows = []
    for i in range(12):
        # Whole seconds, milliseconds and microseconds: iso() writes each differently.
        at = T0 + timedelta(seconds=10 * i, microseconds=(0, 250_000, 123_457)[i % 3])
        rows.append(row(i, "list-cam", "video", {} if i % 2 else {"mime": "video/mp4"}, at, cut=i == 5))
        rows.append(row(i, "list-cs1", "audio", {**CALL_META, "mime": "audio/ogg; codecs=opus"}, at))
        rows.append(row(i, "list-cs2", "audio", {"format": "flac", "pauses": "not a list"}, at))
    with e.begin() as c:
        c.execute(
            insert(Source).values(id="list-cam", kind="camera", site="demo", retention_class="office-camera")
        )
        for line in ("list-cs1", "list-cs2"):
            c.execute(
                insert(Source).values(id=line, kind="line", site="demo", retention_class="office-camera")
            )
        c.execute(insert(Segment), rows)
    yield e
    v.close()


@pytest.mark.parametrize("source", ["list-cam", "list-cs1", "list-cs2"])
def test_listing_json_writes_what_the_response_model_writes(engine: Engine, source: str) -> None:
    a, b = T0 + timedelta(seconds=15), T0 + timedelta(seconds=95)
    with session_factory(engine)() as s:
        rows = find_segments(s, source, a, b, 1000, columns=LISTING_COLUMNS)
        entities = find_segments(s, source, a, b, 1000)
        assert [x.id for x in rows] == [x.id for x in entities]
        assert len(rows) == 9  # the one starting 5 s before a reaches into the range
        body = listing_json([seg_fields(x) for x in rows]).body
        assert body == listing_json([seg_fields(x) for x in entities]).body
    assert body == TypeAdapter(list[SegmentOut]).dump_json([SegmentOut(**seg_fields(x)) for x in rows])
    listed = orjson.loads(body)
    assert [(x["start"], x["end"]) for x in listed] == [(iso(x.start), iso(x.end)) for x in rows]
    assert {x["start"][19:] for x in listed} == {"Z", ".250000Z", ".123457Z"}
    if source == "list-cs1":
        assert listed[0]["call"]["pauses"] == [
            {"offset": 3.25, "start": "2026-11-01T08:00:03Z", "end": "2026-11-01T08:00:20Z", "seconds": 17.0}
        ]
        assert listed[0]["mime"] == "audio/ogg; codecs=opus"
    if source == "list-cs2":
        assert listed[0]["call"]["pauses"] == [] and listed[0]["mime"] == "audio/flac"
