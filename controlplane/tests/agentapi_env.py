"""A running control plane for the agent API tests, on SQLite and on PostgreSQL, and what the tests
need around it: the tenant, subscription and resource group (made directly in its database),
principals with roles and their access tokens (minted with the server's own signing key, so
that no token endpoint is needed), and direct reads and writes of machine rows.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from agent_bundles import publish_versions
from agent_client import AgentClient
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
from arc_controlplane.machines.status import MachineStatus, machine_status
from arc_controlplane.timing import DEFAULT_TIMING, Timing

DATABASES = ["sqlite", "postgresql"]
RESOURCE_GROUP = "Arc-Servers"


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass
class AgentApiEnv:
    server: Server
    db: Database
    tokens: TokenIssuer
    http: httpx.Client
    tenant_id: str
    subscription_id: str
    timing: Timing = DEFAULT_TIMING
    """The server's (``serve --heartbeat-interval``): what ``status`` derives with."""
    _tokens: dict[tuple[str | None, str | None, str | None], str] = field(default_factory=dict)

    def publish_agent(self, *versions: str) -> None:
        """Publish small bundles of these agent versions in the server's agent package store."""
        publish_versions(self.db, self.server.data_dir, self.server.data_dir.parent / "bundles", *versions)

    @property
    def public_url(self) -> str:
        return self.tokens.public_url

    @property
    def group_scope(self) -> str:
        return f"/subscriptions/{self.subscription_id}/resourceGroups/{RESOURCE_GROUP}"

    def machine_id(self, name: str) -> str:
        return f"{self.group_scope}/providers/Microsoft.HybridCompute/machines/{name}"

    # --- principals ----------------------------------------------------------------------------

    def principal_token(
        self, role: str | None, scope: str | None = None, tenant_id: str | None = None
    ) -> str:
        """A management access token of a service principal with ``role`` at ``scope`` (made once)."""
        wanted = (role, scope, tenant_id)
        if wanted not in self._tokens:
            self._tokens[wanted] = self._new_principal_token(role, scope, tenant_id)
        return self._tokens[wanted]

    def _new_principal_token(self, role: str | None, scope: str | None, tenant_id: str | None) -> str:
        now = utcnow()
        tenant = tenant_id or self.tenant_id
        with self.db.session() as session:
            ensure_tenant(session, tenant, "test tenant", now)
            created = create_service_principal(
                session, tenant_id=tenant, display_name=f"sp-{uuid.uuid4().hex[:8]}", now=now
            )
            if role is not None:
                assign_role(
                    session, created.principal, role, scope or f"/subscriptions/{self.subscription_id}", now
                )
            principal_id, app_id = created.principal.id, created.principal.app_id
        issued = self.tokens.issue(
            tenant_id=tenant,
            object_id=principal_id,
            app_id=app_id,
            audience="https://management.azure.com/",
            lifetime=dt.timedelta(hours=1),
            now=now,
        )
        return issued.token

    def onboarding_token(self) -> str:
        return self.principal_token("Azure Connected Machine Onboarding")

    # --- agents --------------------------------------------------------------------------------

    def agent(self, key_kind: str = "ec", host_id: str = "") -> AgentClient:
        return AgentClient(self.http, self.public_url, key_kind=key_kind, host_id=host_id)

    def registration(self, agent: AgentClient, name: str, **extra: Any) -> dict[str, Any]:
        return agent.registration(
            subscription_id=self.subscription_id,
            tenant_id=self.tenant_id,
            resource_group=RESOURCE_GROUP,
            name=name,
            **extra,
        )

    def connected_agent(self, name: str = "", key_kind: str = "ec", host_id: str = "") -> AgentClient:
        """A new agent, registered as machine ``name`` (a fresh name by default)."""
        agent = self.agent(key_kind, host_id)
        reply = agent.register(self.onboarding_token(), self.registration(agent, name or new_name()))
        assert reply.status_code == 201, reply.text
        return agent

    # --- database ------------------------------------------------------------------------------

    def machine(self, vm_id: str) -> Machine | None:
        with self.db.session() as session:
            return session.scalars(select(Machine).where(Machine.vm_id == vm_id)).first()

    def machine_by_name(self, name: str) -> Machine | None:
        with self.db.session() as session:
            return session.scalars(select(Machine).where(Machine.name_lower == name.lower())).first()

    def status(self, vm_id: str) -> MachineStatus:
        machine = self.machine(vm_id)
        assert machine is not None
        return machine_status(machine, utcnow(), self.timing)

    def update_machine(self, vm_id: str, **values: Any) -> None:
        with self.db.session() as session:
            machine = session.scalars(select(Machine).where(Machine.vm_id == vm_id)).one()
            for name, value in values.items():
                setattr(machine, name, value)

    def principal(self, principal_id: str) -> Principal | None:
        with self.db.session() as session:
            return session.get(Principal, principal_id)

    def audit_entries(self, target: str, count: int) -> list[AuditEntry]:
        return audit_entries(self.db, target, count)


def new_name() -> str:
    return f"host-{uuid.uuid4().hex[:10]}"


def start_env(
    database: str, base: Path, request: pytest.FixtureRequest, heartbeat_interval: int | None = None
) -> Iterator[AgentApiEnv]:
    """One server for a test module; the database is a new SQLite file or PostgreSQL database.

    ``heartbeat_interval`` is given to ``serve --heartbeat-interval`` (default: the server's).
    """
    if database == "sqlite":
        url = f"sqlite:///{base / 'controlplane.db'}"
    else:
        postgres: PostgresServer = request.getfixturevalue("postgres_server")
        url = postgres.new_database()
    data_dir = base / "data"
    extra = ["--database-url", url]
    timing = DEFAULT_TIMING
    if heartbeat_interval is not None:
        extra += ["--heartbeat-interval", str(heartbeat_interval)]
        timing = Timing.every(heartbeat_interval)
    server = start_server(data_dir, extra)
    db = Database.open(url)
    tokens = TokenIssuer(load_or_create_signing_key(data_dir / "keys"), f"https://127.0.0.1:{server.port}")
    tenant_id, subscription_id = str(uuid.uuid4()), str(uuid.uuid4())
    now = utcnow()
    with db.session() as session:
        ensure_tenant(session, tenant_id, "Contoso", now)
        ensure_subscription(session, subscription_id, tenant_id, "Contoso test", now)
        session.add(
            ResourceGroup(
                subscription_id=subscription_id,
                name=RESOURCE_GROUP,
                name_lower=RESOURCE_GROUP.lower(),
                location="westeurope",
                tags={},
                created_at=now,
            )
        )
    http = httpx.Client(base_url=server.url(""), verify=ca_context(server.ca_file), timeout=30)
    try:
        yield AgentApiEnv(server, db, tokens, http, tenant_id, subscription_id, timing)
    finally:
        http.close()
        server.stop()
        db.dispose()
        assert "Traceback" not in server.log(), server.log()
