"""Arc gateways

``Microsoft.HybridCompute/gateways`` and the machines' link to one (their ``settings/default``);
docs/gateway.md.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "gateways",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("resource_id", sa.String(length=512), nullable=False),
        sa.Column("resource_id_lower", sa.String(length=512), nullable=False),
        sa.Column("subscription_id", sa.String(length=36), nullable=False),
        sa.Column("resource_group_lower", sa.String(length=90), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("name_lower", sa.String(length=64), nullable=False),
        sa.Column("location", sa.String(length=64), nullable=False),
        sa.Column("tags", sa.JSON(), nullable=False),
        sa.Column("gateway_id", sa.String(length=36), nullable=False),
        sa.Column("gateway_type", sa.String(length=16), nullable=False),
        sa.Column("allowed_features", sa.JSON(), nullable=False),
        sa.Column("gateway_bypass", sa.JSON(), nullable=False),
        sa.Column("provisioning_state", sa.String(length=32), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["subscription_id"], ["subscriptions.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("resource_id_lower"),
        sa.UniqueConstraint("gateway_id"),
    )
    op.create_index(
        "ix_gateways_group", "gateways", ["subscription_id", "resource_group_lower", "name_lower"]
    )
    with op.batch_alter_table("machines", schema=None) as batch_op:
        batch_op.add_column(sa.Column("gateway_id", sa.Integer(), nullable=True))
        batch_op.create_index("ix_machines_gateway_id", ["gateway_id"])
        batch_op.create_foreign_key("fk_machines_gateway_id", "gateways", ["gateway_id"], ["id"])


def downgrade() -> None:
    with op.batch_alter_table("machines", schema=None) as batch_op:
        batch_op.drop_constraint("fk_machines_gateway_id", type_="foreignkey")
        batch_op.drop_index("ix_machines_gateway_id")
        batch_op.drop_column("gateway_id")
    op.drop_index("ix_gateways_group", table_name="gateways")
    op.drop_table("gateways")
