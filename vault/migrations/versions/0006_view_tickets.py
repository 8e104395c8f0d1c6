"""View tickets in the index (several API processes serve one view); who verified a subject's identity."""

import sqlalchemy as sa
from alembic import op

from vault.index.schema import UTCDateTime

revision = "0006_view_tickets"
down_revision = "0005_log_heads_accounts"


def upgrade() -> None:
    op.create_table(
        "view_tickets",
        sa.Column("token_sha256", sa.String(64), primary_key=True),
        sa.Column("user_id", sa.Integer, nullable=False),
        sa.Column("source", sa.String(64), nullable=False),
        sa.Column("segment_ids", sa.JSON, nullable=False),
        sa.Column("shifts", sa.JSON, nullable=False, server_default="{}"),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=False),
    )
    op.create_index("ix_view_tickets_user", "view_tickets", ["user_id", "created_at"])
    op.create_index("ix_view_tickets_expires", "view_tickets", ["expires_at"])
    with op.batch_alter_table("subject_requests") as b:
        b.add_column(sa.Column("identity_verified_by", sa.String(64), nullable=True))
        b.add_column(sa.Column("identity_verified_at", UTCDateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("subject_requests") as b:
        b.drop_column("identity_verified_at")
        b.drop_column("identity_verified_by")
    op.drop_table("view_tickets")
