"""Alembic environment: runs against the engine handed over by vault.index.db.migrate()."""

from alembic import context

from vault.index.schema import Base

config = context.config
target_metadata = Base.metadata


def run() -> None:
    engine = config.attributes.get("engine")
    if engine is None:
        from sqlalchemy import create_engine

        engine = create_engine(config.get_main_option("sqlalchemy.url"))
    with engine.begin() as connection:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            render_as_batch=connection.dialect.name == "sqlite",
            # vault.index.db.migrate's progress callback, when a terminal shows a bar.
            on_version_apply=config.attributes.get("on_version_apply"),
        )
        context.run_migrations()


run()
