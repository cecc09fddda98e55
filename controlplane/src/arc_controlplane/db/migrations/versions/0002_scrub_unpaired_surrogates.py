"""scrub unpaired surrogates from stored tags and properties

Versions before 0002 let an unpaired UTF-16 surrogate (``"\\ud800"``) into tags and machine
properties; such a value cannot be encoded as UTF-8, and answers carrying it failed. Bodies are
now checked at the edge; this migration replaces what is already stored with U+FFFD.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from arc_controlplane.text import scrub_document

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_COLUMNS = {"machines": ("tags", "properties", "error_details"), "resource_groups": ("tags",)}
_BATCH = 500


def upgrade() -> None:
    connection = op.get_bind()
    for table_name, columns in _COLUMNS.items():
        table = sa.table(table_name, sa.column("id", sa.Integer), *(sa.column(c, sa.JSON) for c in columns))
        last = 0
        while True:
            rows = connection.execute(
                sa.select(table).where(table.c.id > last).order_by(table.c.id).limit(_BATCH)
            ).all()
            if not rows:
                break
            for row in rows:
                values = {c: scrub_document(row._mapping[c]) for c in columns}
                if any(values[c] != row._mapping[c] for c in columns):
                    connection.execute(sa.update(table).where(table.c.id == row.id).values(**values))
            last = rows[-1].id


def downgrade() -> None:
    """Nothing to undo: the scrubbed values were not text."""
