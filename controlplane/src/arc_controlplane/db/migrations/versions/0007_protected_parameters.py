"""protected configuration parameters

``configurationProtectedParameter`` of guest configuration assignments, kept only encrypted to
the machine's extension certificate (docs/machine-configuration.md, "Protected parameters").

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("guest_configuration_assignments", schema=None) as batch_op:
        batch_op.add_column(sa.Column("protected_parameters", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("protected_parameters_thumbprint", sa.String(length=40), nullable=True))
        batch_op.add_column(sa.Column("protected_parameters_digest", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("guest_configuration_assignments", schema=None) as batch_op:
        batch_op.drop_column("protected_parameters_digest")
        batch_op.drop_column("protected_parameters_thumbprint")
        batch_op.drop_column("protected_parameters")
