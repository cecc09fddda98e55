"""The schema, migrations and types on both databases."""

from __future__ import annotations

import datetime as dt

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import select

from arc_controlplane.db.engine import Database, validate_database_url
from arc_controlplane.db.migrate import current_revision, head_revision, upgrade
from arc_controlplane.db.tables import AuditEntry, Base, Subscription, Tenant
from arc_controlplane.errors import ControlPlaneError


def test_migrations_build_exactly_the_models(database_url: str) -> None:
    db = Database.open(database_url)
    try:
        assert current_revision(db.engine) is None
        upgrade(db.engine)
        upgrade(db.engine)  # a second run changes nothing
        assert current_revision(db.engine) == head_revision()
        with db.engine.connect() as connection:
            assert compare_metadata(MigrationContext.configure(connection), Base.metadata) == []
    finally:
        db.dispose()


def test_times_come_back_as_aware_utc(database_url: str) -> None:
    db = Database.open(database_url)
    upgrade(db.engine)
    try:
        when = dt.datetime(2026, 11, 22, 5, 0, 0, tzinfo=dt.timezone(dt.timedelta(hours=2)))
        with db.session() as session:
            session.add(Tenant(id="t1", display_name="T", created_at=when))
            session.flush()
            session.add(Subscription(id="s1", tenant_id="t1", display_name="S", created_at=when))
            session.add(
                AuditEntry(time=when, principal_name="p", action="a", target="x", result="Succeeded:200")
            )
        with db.session() as session:
            tenant = session.get(Tenant, "t1")
            assert tenant is not None
            assert tenant.created_at == when
            assert tenant.created_at.tzinfo == dt.UTC
            entry = session.scalars(select(AuditEntry)).one()
            assert entry.time == when and entry.detail == ""
    finally:
        db.dispose()


def test_a_failed_transaction_leaves_nothing(database_url: str) -> None:
    db = Database.open(database_url)
    upgrade(db.engine)
    now = dt.datetime.now(dt.UTC)
    try:
        with pytest.raises(RuntimeError), db.session() as session:
            session.add(Tenant(id="t2", display_name="T", created_at=now))
            session.flush()
            raise RuntimeError("interrupted")
        with db.session() as session:
            assert session.get(Tenant, "t2") is None
    finally:
        db.dispose()


def test_naive_times_are_refused(tmp_path: object) -> None:
    db = Database.open("sqlite://")
    upgrade(db.engine)
    with pytest.raises(Exception, match="naive datetime"), db.session() as session:
        session.add(Tenant(id="t3", display_name="T", created_at=dt.datetime(2026, 1, 1)))
        session.flush()


@pytest.mark.parametrize(
    "url",
    ["mysql://u@h/db", "not a url", "postgresql://u@h/db"],
)
def test_unsupported_database_urls_name_the_fix(url: str) -> None:
    with pytest.raises(ControlPlaneError, match=r"sqlite:///PATH or postgresql\+psycopg://"):
        validate_database_url(url)
