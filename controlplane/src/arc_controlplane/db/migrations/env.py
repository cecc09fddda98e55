"""Alembic environment: the engine comes from ``config.attributes['engine']`` (see migrate.py)."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Engine

from arc_controlplane.db.tables import Base

engine: Engine = context.config.attributes["engine"]
with engine.begin() as connection:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()
