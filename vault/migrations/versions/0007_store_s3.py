"""The S3 store: each segment row names its object version (deletes and legal holds go by it)."""

import sqlalchemy as sa
from alembic import op

revision = "0007_store_s3"
down_revision = "0006_view_tickets"


def upgrade() -> None:
    with op.batch_alter_table("segments") as b:
        b.add_column(sa.Column("storage_version", sa.String(1024), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("segments") as b:
        b.drop_column("storage_version")
