"""machine extensions

The ``Microsoft.HybridCompute/machines/extensions`` resources and the machines' extension
certificates (docs/extensions.md).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("machines", schema=None) as batch_op:
        batch_op.add_column(sa.Column("extension_certificate_pem", sa.Text(), nullable=True))
        batch_op.add_column(
            sa.Column("extension_certificate_thumbprint", sa.String(length=40), nullable=True)
        )
    op.create_table(
        "machine_extensions",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("machine_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("name_lower", sa.String(length=64), nullable=False),
        sa.Column("publisher", sa.String(length=256), nullable=False),
        sa.Column("type", sa.String(length=256), nullable=False),
        sa.Column("type_handler_version", sa.String(length=64), nullable=True),
        sa.Column("auto_upgrade_minor_version", sa.Boolean(), nullable=True),
        sa.Column("enable_automatic_upgrade", sa.Boolean(), nullable=True),
        sa.Column("force_update_tag", sa.String(length=256), nullable=True),
        sa.Column("tags", sa.JSON(), nullable=False),
        sa.Column("settings", sa.JSON(), nullable=False),
        sa.Column("protected_settings", sa.Text(), nullable=True),
        sa.Column("protected_settings_thumbprint", sa.String(length=40), nullable=True),
        sa.Column("protected_settings_digest", sa.String(length=64), nullable=True),
        sa.Column("provisioning_state", sa.String(length=32), nullable=False),
        sa.Column("instance_view", sa.JSON(), nullable=True),
        sa.Column("sequence_number", sa.Integer(), nullable=False),
        sa.Column("deleting", sa.Boolean(), nullable=False),
        sa.Column("operation_id", sa.String(length=36), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["machine_id"], ["machines.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("machine_id", "name_lower"),
    )
    with op.batch_alter_table("machine_extensions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_machine_extensions_machine_id"), ["machine_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("machine_extensions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_machine_extensions_machine_id"))
    op.drop_table("machine_extensions")
    with op.batch_alter_table("machines", schema=None) as batch_op:
        batch_op.drop_column("extension_certificate_thumbprint")
        batch_op.drop_column("extension_certificate_pem")
