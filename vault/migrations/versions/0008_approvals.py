"""Four-eyes approval requests and break-glass overrides (vault/people/approvals.py)."""

import sqlalchemy as sa
from alembic import op

from vault.index.schema import UTCDateTime

revision = "0008_approvals"
down_revision = "0007_store_s3"


def upgrade() -> None:
    op.create_table(
        "approvals",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("requester", sa.String(64), nullable=False),
        sa.Column("requester_role", sa.String(16), nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("sources", sa.JSON, nullable=False),
        sa.Column("sites", sa.JSON, nullable=False),
        sa.Column("start", UTCDateTime(), nullable=False),
        sa.Column("end", UTCDateTime(), nullable=False),
        sa.Column("purpose", sa.Text, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=False),
        sa.Column("decided_by", sa.String(64), nullable=True),
        sa.Column("decided_at", UTCDateTime(), nullable=True),
        sa.Column("reason", sa.Text, nullable=True),
    )
    op.create_index("ix_approvals_requester", "approvals", ["requester", "state"])
    op.create_index("ix_approvals_state", "approvals", ["state", "created_at"])


def downgrade() -> None:
    op.drop_table("approvals")
