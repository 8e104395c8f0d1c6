"""Initial index: sources, segments (with retention deadline and detached key), gaps."""

import sqlalchemy as sa
from alembic import op

from vault.index.schema import UTCDateTime

revision = "0001_initial"
down_revision = None


def upgrade() -> None:
    op.create_table(
        "sources",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("site", sa.String(64), nullable=False),
        sa.Column("retention_class", sa.String(64), nullable=False),
    )
    op.create_table(
        "segments",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("source", sa.String(64), sa.ForeignKey("sources.id"), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("start", UTCDateTime(), nullable=False),
        sa.Column("end", UTCDateTime(), nullable=False),
        sa.Column("duration", sa.Float, nullable=False),
        sa.Column("plaintext_bytes", sa.BigInteger, nullable=False),
        sa.Column("stored_bytes", sa.BigInteger, nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("retention_class", sa.String(64), nullable=False),
        sa.Column("deadline", UTCDateTime(), nullable=False),
        sa.Column("storage_key", sa.String(512), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("key_id", sa.String(16), nullable=False),
        sa.Column("envelope", sa.LargeBinary, nullable=True),
        sa.Column("cut_short", sa.Boolean, nullable=False),
        sa.Column("meta", sa.JSON, nullable=False),
        sa.Column("ingested_at", UTCDateTime(), nullable=False),
    )
    op.create_index("ix_segments_source_start", "segments", ["source", "start"])
    op.create_index("ix_segments_state_deadline", "segments", ["state", "deadline"])
    op.create_table(
        "gaps",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("source", sa.String(64), sa.ForeignKey("sources.id"), nullable=False),
        sa.Column("start", UTCDateTime(), nullable=False),
        sa.Column("end", UTCDateTime(), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
    )
    op.create_index("ix_gaps_source_start", "gaps", ["source", "start"])


def downgrade() -> None:
    op.drop_table("gaps")
    op.drop_table("segments")
    op.drop_table("sources")
