"""The Alembic migrations and the SQLAlchemy models describe the same schema."""

from __future__ import annotations

from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

import vault.approvals  # noqa: F401  (registers the models on Base.metadata)
import vault.retention_models  # noqa: F401
import vault.subjects  # noqa: F401
import vault.tickets  # noqa: F401
import vault.users  # noqa: F401
from vault.db import Base, current_revision, head_revision, make_engine, migrate


def test_migrations_match_models(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'x.db'}")
    migrate(engine)
    assert current_revision(engine) == head_revision(engine)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == [], f"models and migrations differ: {diff}"
    migrate(engine)  # idempotent at every daemon start
