"""guest configuration

Machine configuration: the package store, assignments on machines and their reports
(docs/machine-configuration.md).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "configuration_packages",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("name", sa.String(length=256), nullable=False),
        sa.Column("name_lower", sa.String(length=256), nullable=False),
        sa.Column("version", sa.String(length=64), nullable=False),
        sa.Column("package_type", sa.String(length=16), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("signature", sa.Text(), nullable=False),
        sa.Column("resources", sa.JSON(), nullable=False),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name_lower", "version"),
    )
    op.create_table(
        "guest_configuration_assignments",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("machine_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=256), nullable=False),
        sa.Column("name_lower", sa.String(length=256), nullable=False),
        sa.Column("configuration", sa.JSON(), nullable=False),
        sa.Column("context", sa.String(length=256), nullable=True),
        sa.Column("assignment_hash", sa.String(length=64), nullable=False),
        sa.Column("compliance_status", sa.String(length=16), nullable=False),
        sa.Column("latest_report_id", sa.String(length=36), nullable=True),
        sa.Column("last_compliance_status_checked", sa.DateTime(timezone=True), nullable=True),
        sa.Column("provisioning_state", sa.String(length=32), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["machine_id"], ["machines.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("machine_id", "name_lower"),
    )
    op.create_index(
        "ix_guest_configuration_assignments_machine_id", "guest_configuration_assignments", ["machine_id"]
    )
    op.create_table(
        "guest_configuration_reports",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("assignment_id", sa.Integer(), nullable=False),
        sa.Column("assignment_hash", sa.String(length=64), nullable=False),
        sa.Column("compliance_status", sa.String(length=16), nullable=False),
        sa.Column("operation_type", sa.String(length=16), nullable=False),
        sa.Column("job_id", sa.String(length=36), nullable=False),
        sa.Column("configuration_version", sa.String(length=64), nullable=False),
        sa.Column("start_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("end_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("resources", sa.JSON(), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["assignment_id"], ["guest_configuration_assignments.id"], ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_gc_reports_assignment", "guest_configuration_reports", ["assignment_id", "end_time"])


def downgrade() -> None:
    op.drop_index("ix_gc_reports_assignment", table_name="guest_configuration_reports")
    op.drop_table("guest_configuration_reports")
    op.drop_index(
        "ix_guest_configuration_assignments_machine_id", table_name="guest_configuration_assignments"
    )
    op.drop_table("guest_configuration_assignments")
    op.drop_table("configuration_packages")
