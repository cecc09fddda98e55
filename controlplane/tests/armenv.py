"""A running control plane with a tenant, a subscription and callers of every role, for the
management API tests (``test_arm_*.py``).

Tokens are minted with the server's own signing key (read from DATA_DIR/keys after the server
created it), so these tests do not depend on the token endpoint.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from agent_bundles import publish_versions
from arc_lab.postgres import PostgresServer
from auditwait import audit_entries
from conftest import Server, ca_context, start_server
from sqlalchemy import select

from arc_controlplane.auth.keys import load_or_create_signing_key
from arc_controlplane.auth.principals import (
    assign_role,
    create_service_principal,
    ensure_subscription,
    ensure_tenant,
)
from arc_controlplane.auth.tokens import TokenIssuer
from arc_controlplane.db.engine import Database
from arc_controlplane.db.tables import AuditEntry, Machine, Principal, ResourceGroup
from arc_controlplane.resource_ids import machine_id

HC = "2026-09-01"
"""The api-version most tests use."""
RG_VERSION = "2024-11-01"
MANAGEMENT = "https://management.azure.com/"


@dataclass
class Caller:
    name: str
    principal_id: str
    app_id: str
    token: str


@dataclass
class ArmEnv:
    server: Server
    db: Database
    issuer: TokenIssuer
    tenant_id: str
    subscription_id: str
    callers: dict[str, Caller] = field(default_factory=dict)

    # -- HTTP -------------------------------------------------------------------------------
    def publish_agent(self, *versions: str) -> None:
        """Publish small bundles of these agent versions in the server's agent package store."""
        publish_versions(self.db, self.server.data_dir, self.server.data_dir.parent / "bundles", *versions)

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.server.url(""), verify=ca_context(self.server.ca_file), timeout=20)

    def call(
        self,
        method: str,
        path: str,
        *,
        caller: str | None = "owner",
        api_version: str | None = HC,
        params: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> httpx.Response:
        query = dict(params or {})
        if api_version is not None:
            query["api-version"] = api_version
        sent = dict(headers or {})
        if caller is not None:
            sent["Authorization"] = f"Bearer {self.callers[caller].token}"
        with self.client() as client:
            return client.request(method, path, params=query, headers=sent, **kwargs)

    # -- paths --------------------------------------------------------------------------------
    @property
    def sub(self) -> str:
        return f"/subscriptions/{self.subscription_id}"

    def group(self, name: str) -> str:
        return f"{self.sub}/resourceGroups/{name}"

    def machine(self, group: str, name: str) -> str:
        return f"{self.group(group)}/providers/Microsoft.HybridCompute/machines/{name}"

    # -- state --------------------------------------------------------------------------------
    def add_principal(self, name: str, role: str | None = None, scope: str | None = None) -> Caller:
        now = dt.datetime.now(dt.UTC)
        with self.db.session() as session:
            principal = create_service_principal(
                session, tenant_id=self.tenant_id, display_name=name, now=now
            ).principal
            if role is not None:
                assign_role(session, principal, role, scope or self.sub, now)
            principal_id, app_id = principal.id, principal.app_id
        token = self.mint(principal_id, app_id)
        caller = Caller(name, principal_id, app_id, token)
        self.callers[name] = caller
        return caller

    def mint(
        self, principal_id: str, app_id: str, tenant_id: str | None = None, audience: str = MANAGEMENT
    ) -> str:
        return self.issuer.issue(
            tenant_id=tenant_id or self.tenant_id,
            object_id=principal_id,
            app_id=app_id,
            audience=audience,
            lifetime=dt.timedelta(hours=1),
            now=dt.datetime.now(dt.UTC),
        ).token

    def add_group(self, name: str, location: str = "westeurope") -> None:
        with self.db.session() as session:
            session.add(
                ResourceGroup(
                    subscription_id=self.subscription_id,
                    name=name,
                    name_lower=name.lower(),
                    location=location,
                    tags={},
                    created_at=dt.datetime.now(dt.UTC),
                )
            )

    def add_machines(self, group: str, names: list[str], **columns: Any) -> None:
        """Machines straight into the database (as an agent's registration would leave them)."""
        now = dt.datetime.now(dt.UTC)
        with self.db.session() as session:
            for name in names:
                resource_id = machine_id(self.subscription_id, group, name)
                values: dict[str, Any] = {
                    "resource_id": resource_id,
                    "resource_id_lower": resource_id.lower(),
                    "subscription_id": self.subscription_id,
                    "resource_group_lower": group.lower(),
                    "name": name,
                    "name_lower": name.lower(),
                    "location": "westeurope",
                    "tags": {},
                    "vm_id": str(uuid.uuid4()),
                    "tenant_id": self.tenant_id,
                    "properties": {},
                    "last_status_change": now,
                    "created_at": now,
                    "updated_at": now,
                }
                values.update(columns)
                session.add(Machine(**values))

    def machine_row(self, group: str, name: str) -> Machine | None:
        with self.db.session() as session:
            return session.scalars(
                select(Machine).where(
                    Machine.subscription_id == self.subscription_id,
                    Machine.resource_group_lower == group.lower(),
                    Machine.name_lower == name.lower(),
                )
            ).first()

    def principal_exists(self, principal_id: str) -> bool:
        with self.db.session() as session:
            return session.get(Principal, principal_id) is not None

    def audit_entries(self, target: str, count: int) -> list[AuditEntry]:
        return audit_entries(self.db, target, count)


def error_of(reply: httpx.Response) -> dict[str, str]:
    """The ARM error of a reply, after checking that the body is exactly ``{"error": {...}}``."""
    body = reply.json()
    assert set(body) == {"error"}, body
    assert {"code", "message"} <= set(body["error"]), body
    return dict(body["error"])


def _database_url(kind: str, directory: Path, request: pytest.FixtureRequest) -> str:
    if kind == "sqlite":
        return f"sqlite:///{directory / 'controlplane.db'}"
    postgres: PostgresServer = request.getfixturevalue("postgres_server")
    return postgres.new_database()


@contextmanager
def arm_environment(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, extra: Sequence[str] = ()
) -> Iterator[ArmEnv]:
    """A server on ``request.param`` (``sqlite`` or ``postgresql``) and its callers:

    ``owner`` (Owner), ``admin`` (Resource Administrator), ``onboarding`` and ``reader`` at the
    subscription; ``nobody`` without any role. ``extra``: more ``serve`` arguments.
    """
    directory = tmp_path_factory.mktemp(f"arm-{request.param}")
    url = _database_url(str(request.param), directory, request)
    server = start_server(directory / "data", ["--database-url", url, *extra])
    db = Database.open(url)
    try:
        key = load_or_create_signing_key(directory / "data" / "keys")
        issuer = TokenIssuer(key, f"https://127.0.0.1:{server.port}")
        tenant_id, subscription_id = str(uuid.uuid4()), str(uuid.uuid4())
        now = dt.datetime.now(dt.UTC)
        with db.session() as session:
            ensure_tenant(session, tenant_id, "Tests", now)
            ensure_subscription(session, subscription_id, tenant_id, "Tests", now)
        env = ArmEnv(server, db, issuer, tenant_id, subscription_id)
        env.add_principal("owner", "Owner")
        env.add_principal("admin", "Resource Administrator")
        env.add_principal("onboarding", "Onboarding")
        env.add_principal("reader", "Reader")
        env.add_principal("nobody")
        yield env
    finally:
        db.dispose()
        server.stop()
