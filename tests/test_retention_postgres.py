"""Retention on PostgreSQL: the purge runs, and the database itself refuses to drop a held segment."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import IntegrityError

from tests.conftest import use_database
from tests.support.appliance import make_appliance
from tests.support.retention import Clock, make_segments, place_hold, set_purge
from vault.index.schema import PurgeLogRow, Segment
from vault.retention.purge import Purger
from vault.vault import Vault

T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)


def test_purge_and_hold_guard_on_postgresql(tmp_path: Path, postgres_cluster) -> None:  # type: ignore[no-untyped-def]
    app = use_database(make_appliance(tmp_path / "site"), postgres_cluster.create_database())
    set_purge(app, require_clock_sync=False)
    clock = Clock(T0)
    v = Vault(app.cfg, clock=clock)
    assert v.engine.dialect.name == "postgresql"
    held_id, free_id, other_id = make_segments(v, "garage-1", T0 - timedelta(hours=1), 3, seconds=600)
    place_hold(
        v,
        "vandalism of car 12",
        known_sources={c.id for c in v.cfg.cameras},
        segment_ids=[held_id],
        incident="INC-7",
    )
    clock.advance(days=22)  # parking-camera: 21 days
    Purger(v).run()
    with v.sessions() as s:
        left = set(s.scalars(select(Segment.id)))
        logged = list(s.scalars(select(PurgeLogRow.segment_id)))
    assert left == {held_id}
    assert sorted(logged) == sorted([free_id, other_id])
    for stmt, what in (
        ("DELETE FROM segments WHERE id = :id", "deleted"),
        ("UPDATE segments SET envelope = NULL WHERE id = :id", "key cannot be destroyed"),
    ):
        with v.engine.begin() as c, pytest.raises(IntegrityError, match=f"legal hold.*{what}"):
            c.execute(text(stmt), {"id": held_id})
    with v.sessions() as s, v.open_segment(v.get_segment(s, held_id)) as r:
        assert r.plaintext_size > 0
    v.close()
