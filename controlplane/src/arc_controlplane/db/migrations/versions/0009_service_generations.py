"""Per-service generations

``machines.extensions_generation`` and ``machines.configuration_generation``: the generation of the
last work for each of the agent's on-demand services, so that the agent wakes only the one a change
is for (docs/agent-protocol.md, 5.6).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("machines", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("extensions_generation", sa.Integer(), server_default="0", nullable=False)
        )
        batch_op.add_column(
            sa.Column("configuration_generation", sa.Integer(), server_default="0", nullable=False)
        )


def downgrade() -> None:
    with op.batch_alter_table("machines", schema=None) as batch_op:
        batch_op.drop_column("configuration_generation")
        batch_op.drop_column("extensions_generation")
