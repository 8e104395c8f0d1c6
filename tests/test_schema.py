"""The Alembic migrations and the SQLAlchemy models describe the same schema."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from vault.index.db import current_revision, head_revision, make_engine, migrate
from vault.index.schema import Base


def _for_dialect(name: str) -> Any:
    """Leave out model indexes declared for another dialect (`Index(...).ddl_if(dialect=...)`)."""

    def include(obj: Any, _name: str | None, type_: str, reflected: bool, _other: Any) -> bool:
        when = getattr(obj, "_ddl_if", None)
        return not (
            type_ == "index" and not reflected and when is not None and when.dialect not in (None, name)
        )

    return include


@pytest.mark.parametrize("dialect", ["sqlite", "postgresql"])
def test_migrations_match_models(tmp_path: Path, request: pytest.FixtureRequest, dialect: str) -> None:
    if dialect == "sqlite":
        url = f"sqlite:///{tmp_path / 'x.db'}"
    else:
        url = request.getfixturevalue("postgres_cluster").create_database()
    engine = make_engine(url)
    migrate(engine)
    assert current_revision(engine) == head_revision(engine)
    with engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"include_object": _for_dialect(dialect)})
        diff = compare_metadata(ctx, Base.metadata)
    assert diff == [], f"models and migrations differ: {diff}"
    migrate(engine)  # idempotent at every daemon start
    engine.dispose()
