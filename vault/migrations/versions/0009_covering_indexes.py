"""ix_segments_source_start covers the search, timeline and playlist range scans.

SQLite: (source, start, end, id, kind, duration, cut_short, plaintext_bytes, meta) as keys (it
has no INCLUDE). PostgreSQL: keys (source, start) INCLUDE the rest (json has no btree order).
Either way those queries read the index alone and never visit a table row.
"""

from alembic import op

revision = "0009_covering_indexes"
down_revision = "0008_approvals"

COVER = ["end", "id", "kind", "duration", "cut_short", "plaintext_bytes", "meta"]


def upgrade() -> None:
    op.drop_index("ix_segments_source_start", table_name="segments")
    if op.get_bind().dialect.name == "postgresql":
        op.create_index("ix_segments_source_start", "segments", ["source", "start"], postgresql_include=COVER)
    else:
        op.create_index("ix_segments_source_start", "segments", ["source", "start", *COVER])


def downgrade() -> None:
    op.drop_index("ix_segments_source_start", table_name="segments")
    op.create_index("ix_segments_source_start", "segments", ["source", "start"])
