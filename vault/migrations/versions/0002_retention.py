"""Retention enforcement: holds, purge log, access log, signed checkpoints, purger state.

Also installs (SQLite and PostgreSQL) triggers that refuse to delete or shred a segment covered by an
unreleased hold: the last line of defence if any code path, or a person with the database
file, tries to delete held footage. A row already 'purging' has lost its key, so a hold placed
after the mark cannot save it and does not block finishing the purge.
"""

import sqlalchemy as sa
from alembic import op

from vault.index.schema import UTCDateTime

revision = "0002_retention"
down_revision = "0001_initial"

_HELD = """
    EXISTS (SELECT 1 FROM hold_segments hs JOIN holds h ON h.id = hs.hold_id
            WHERE hs.segment_id = OLD.id AND h.released_at IS NULL)
    OR EXISTS (SELECT 1 FROM hold_sources hs JOIN holds h ON h.id = hs.hold_id
            WHERE hs.source = OLD.source AND h.released_at IS NULL
              AND h.start <= OLD."end" AND h."end" >= OLD.start)
"""


def upgrade() -> None:
    op.create_table(
        "holds",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("start", UTCDateTime(), nullable=True),
        sa.Column("end", UTCDateTime(), nullable=True),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("incident", sa.String(200), nullable=True),
        sa.Column("created_by", sa.String(200), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("until", UTCDateTime(), nullable=True),
        sa.Column("released_at", UTCDateTime(), nullable=True),
        sa.Column("released_by", sa.String(200), nullable=True),
        sa.Column("release_reason", sa.Text, nullable=True),
    )
    op.create_table(
        "hold_sources",
        sa.Column("hold_id", sa.String(32), sa.ForeignKey("holds.id"), primary_key=True),
        sa.Column("source", sa.String(64), primary_key=True),
    )
    op.create_index("ix_hold_sources_source", "hold_sources", ["source"])
    op.create_table(
        "hold_segments",
        sa.Column("hold_id", sa.String(32), sa.ForeignKey("holds.id"), primary_key=True),
        sa.Column("segment_id", sa.String(64), primary_key=True),
    )
    op.create_index("ix_hold_segments_segment", "hold_segments", ["segment_id"])
    op.create_table(
        "purge_log",
        sa.Column("seq", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("segment_id", sa.String(64), nullable=False, unique=True),
        sa.Column("reason", sa.String(32), nullable=False),
        sa.Column("purged_at", UTCDateTime(), nullable=False),
        sa.Column("entry", sa.Text, nullable=False),
        sa.Column("leaf_hash", sa.String(64), nullable=False),
    )
    op.create_table(
        "access_log",
        sa.Column("seq", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("user", sa.String(200), nullable=False),
        sa.Column("at", UTCDateTime(), nullable=False),
        sa.Column("entry", sa.Text, nullable=False),
        sa.Column("leaf_hash", sa.String(64), nullable=False),
    )
    op.create_table(
        "log_checkpoints",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("log", sa.String(16), nullable=False),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("root", sa.String(64), nullable=False),
        sa.Column("time", UTCDateTime(), nullable=False),
        sa.Column("origin", sa.String(200), nullable=False),
        sa.Column("key_id", sa.String(16), nullable=False),
        sa.Column("signature", sa.String(200), nullable=False),
    )
    op.create_index("ix_log_checkpoints_log_size", "log_checkpoints", ["log", "size"])
    op.create_table(
        "purge_pending",
        sa.Column("segment_id", sa.String(64), primary_key=True),
        sa.Column("reason", sa.String(32), nullable=False),
        sa.Column("marked_at", UTCDateTime(), nullable=False),
    )
    op.create_table(
        "purger_state",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
    )
    if op.get_bind().dialect.name == "sqlite":
        op.execute(
            f"""CREATE TRIGGER segments_hold_guard_delete BEFORE DELETE ON segments
            WHEN OLD.state != 'purging' AND ({_HELD})
            BEGIN SELECT RAISE(ABORT, 'holdfast: segment is under legal hold; it cannot be deleted'); END"""
        )
        op.execute(
            f"""CREATE TRIGGER segments_hold_guard_shred BEFORE UPDATE OF envelope, state ON segments
            WHEN OLD.state != 'purging' AND (NEW.envelope IS NULL OR NEW.state != OLD.state) AND ({_HELD})
            BEGIN SELECT RAISE(ABORT, 'holdfast: segment is under legal hold; its key cannot be destroyed'); END"""
        )
    elif op.get_bind().dialect.name == "postgresql":
        # The same guard on PostgreSQL; SQLSTATE 23000 so both backends raise IntegrityError.
        op.execute(
            f"""CREATE FUNCTION holdfast_hold_guard() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
              IF OLD.state <> 'purging' AND ({_HELD}) THEN
                IF TG_OP = 'DELETE' THEN
                  RAISE EXCEPTION 'holdfast: segment is under legal hold; it cannot be deleted'
                    USING ERRCODE = 'integrity_constraint_violation';
                ELSIF NEW.envelope IS NULL OR NEW.state <> OLD.state THEN
                  RAISE EXCEPTION 'holdfast: segment is under legal hold; its key cannot be destroyed'
                    USING ERRCODE = 'integrity_constraint_violation';
                END IF;
              END IF;
              IF TG_OP = 'DELETE' THEN RETURN OLD; END IF;
              RETURN NEW;
            END $$"""
        )
        op.execute(
            "CREATE TRIGGER segments_hold_guard_delete BEFORE DELETE ON segments "
            "FOR EACH ROW EXECUTE FUNCTION holdfast_hold_guard()"
        )
        op.execute(
            "CREATE TRIGGER segments_hold_guard_shred BEFORE UPDATE OF envelope, state ON segments "
            "FOR EACH ROW EXECUTE FUNCTION holdfast_hold_guard()"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute("DROP TRIGGER IF EXISTS segments_hold_guard_delete")
        op.execute("DROP TRIGGER IF EXISTS segments_hold_guard_shred")
    elif op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS segments_hold_guard_delete ON segments")
        op.execute("DROP TRIGGER IF EXISTS segments_hold_guard_shred ON segments")
        op.execute("DROP FUNCTION IF EXISTS holdfast_hold_guard()")
    for t in (
        "purger_state",
        "purge_pending",
        "log_checkpoints",
        "access_log",
        "purge_log",
        "hold_segments",
        "hold_sources",
        "holds",
    ):
        op.drop_table(t)
