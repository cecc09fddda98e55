"""extension packages

The extension catalogue: packages the operator publishes, with their SHA-256 and signature
(docs/extensions.md).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "extension_packages",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("publisher", sa.String(length=256), nullable=False),
        sa.Column("publisher_lower", sa.String(length=256), nullable=False),
        sa.Column("type", sa.String(length=256), nullable=False),
        sa.Column("type_lower", sa.String(length=256), nullable=False),
        sa.Column("version", sa.String(length=64), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("signature", sa.Text(), nullable=False),
        sa.Column("handler_manifest", sa.JSON(), nullable=False),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("publisher_lower", "type_lower", "version"),
    )


def downgrade() -> None:
    op.drop_table("extension_packages")
