"""Subject access requests (GDPR art. 15), each with a legal hold until answered."""

import sqlalchemy as sa
from alembic import op

from vault.index.schema import UTCDateTime

revision = "0004_subject_requests"
down_revision = "0003_api"


def upgrade() -> None:
    op.create_table(
        "subject_requests",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("subject", sa.Text, nullable=False),
        sa.Column("identity_verified", sa.Boolean, nullable=False),
        sa.Column("identity_note", sa.Text, nullable=False),
        sa.Column("sources", sa.JSON, nullable=False),
        sa.Column("start", UTCDateTime(), nullable=False),
        sa.Column("end", UTCDateTime(), nullable=False),
        sa.Column("received_at", UTCDateTime(), nullable=False),
        sa.Column("deadline", UTCDateTime(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("hold_id", sa.String(64), nullable=True),
        sa.Column("opened_by", sa.String(64), nullable=False),
        sa.Column("closed_by", sa.String(64), nullable=True),
        sa.Column("closed_at", UTCDateTime(), nullable=True),
        sa.Column("close_reason", sa.Text, nullable=True),
        sa.Column("exports", sa.JSON, nullable=False),
    )
    op.create_index("ix_subject_requests_state", "subject_requests", ["state"])


def downgrade() -> None:
    op.drop_table("subject_requests")
