"""Log heads: the row every append to a tamper-evident log locks and advances.

Each log's head (size, tail leaf hash, Merkle frontier) is computed here from the entries
already stored, so existing logs continue their chain.
"""

import sqlalchemy as sa
from alembic import op

from vault.ledger.merkle import MerkleAccumulator

revision = "0005_log_heads_accounts"
down_revision = "0004_subject_requests"

LOGS = (("purge", "purge_log"), ("access", "access_log"))


def upgrade() -> None:
    heads = op.create_table(
        "log_heads",
        sa.Column("log", sa.String(16), primary_key=True),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("tail", sa.String(64), nullable=True),
        sa.Column("frontier", sa.Text, nullable=False),
    )
    bind = op.get_bind()
    rows = []
    for name, table in LOGS:
        acc = MerkleAccumulator()
        tail = None
        for seq, leaf in bind.execute(sa.text(f"SELECT seq, leaf_hash FROM {table} ORDER BY seq")):
            if seq != acc.size:
                raise RuntimeError(
                    f"{table} jumps from seq {acc.size - 1} to {seq}: rows were deleted; restore the "
                    "index from backup before upgrading"
                )
            acc.append(bytes.fromhex(leaf))
            tail = leaf
        rows.append(
            {
                "log": name,
                "size": acc.size,
                "tail": tail,
                "frontier": "".join(h.hex() for h in acc.frontier()),
            }
        )
    op.bulk_insert(heads, rows)


def downgrade() -> None:
    op.drop_table("log_heads")
