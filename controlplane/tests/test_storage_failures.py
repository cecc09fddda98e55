"""A full disk under the control plane (issue 10, finding 6), on SQLite and PostgreSQL.

The database's file system is a small tmpfs that the test fills to the last byte. Writes must
then be refused with ARM's 507 ``InsufficientStorage`` and ``Retry-After`` (never a bare 500,
never a dropped connection), reads must still be served, a failed sign-in's audit entry must
not be lost, and the moment space returns, writes and heartbeats must succeed again, with the
database intact and every acknowledged write in it.
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from agent_client import AgentClient
from arc_lab.disks import fill, small_filesystem
from arc_lab.postgres import PostgresServer
from auditwait import audit_entries
from conftest import ca_context, free_port, start_server
from sqlalchemy import select, text

from arc_controlplane.auth.keys import load_or_create_signing_key
from arc_controlplane.auth.principals import (
    assign_role,
    create_service_principal,
    ensure_subscription,
    ensure_tenant,
)
from arc_controlplane.auth.tokens import TokenIssuer
from arc_controlplane.db.engine import Database
from arc_controlplane.db.tables import Machine, ResourceGroup

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="mounts a small tmpfs: needs root")

API = "api-version=2026-09-01"
GROUP = "full-disk"


class Plane:
    def __init__(self, url: str, data_dir: Path) -> None:
        self.server = start_server(data_dir, ["--database-url", url])
        self.db = Database.open(url)
        self.issuer = TokenIssuer(
            load_or_create_signing_key(data_dir / "keys"), f"https://127.0.0.1:{self.server.port}"
        )
        self.http = httpx.Client(
            base_url=self.server.url(""), verify=ca_context(self.server.ca_file), timeout=30
        )
        self.tenant, self.subscription = str(uuid.uuid4()), str(uuid.uuid4())
        now = dt.datetime.now(dt.UTC)
        with self.db.session() as session:
            ensure_tenant(session, self.tenant, "t", now)
            ensure_subscription(session, self.subscription, self.tenant, "s", now)
            session.add(ResourceGroup(subscription_id=self.subscription, name=GROUP, name_lower=GROUP,
                                      location="westeurope", tags={}, created_at=now))  # fmt: skip
            created = create_service_principal(session, tenant_id=self.tenant, display_name="owner", now=now)
            assign_role(session, created.principal, "Owner", f"/subscriptions/{self.subscription}", now)
            self.client_id, self.secret = created.principal.app_id, str(created.client_secret)
            principal_id = created.principal.id
        self.token = self.issuer.issue(
            tenant_id=self.tenant, object_id=principal_id, app_id=self.client_id,
            audience="https://management.azure.com/", lifetime=dt.timedelta(hours=1), now=now,
        ).token  # fmt: skip

    def machine_path(self, name: str) -> str:
        return (f"/subscriptions/{self.subscription}/resourceGroups/{GROUP}/providers/"
                f"Microsoft.HybridCompute/machines/{name}?{API}")  # fmt: skip

    def call(self, method: str, path: str, **kwargs: object) -> httpx.Response:
        return self.http.request(method, path, headers={"Authorization": f"Bearer {self.token}"}, **kwargs)  # type: ignore[arg-type]

    def sign_in(self, secret: str) -> httpx.Response:
        return self.http.post(f"/{self.tenant}/oauth2/v2.0/token", data={
            "grant_type": "client_credentials", "client_id": self.client_id, "client_secret": secret,
            "scope": "https://management.azure.com/.default"})  # fmt: skip

    def close(self) -> None:
        self.http.close()
        self.server.stop()
        self.db.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def full_disk_plane(request: pytest.FixtureRequest) -> Iterator[tuple[Plane, Path]]:
    with small_filesystem("24m" if request.param == "sqlite" else "160m") as filesystem:
        if request.param == "sqlite":
            plane = Plane(f"sqlite:///{filesystem / 'controlplane.db'}", filesystem / "data")
            try:
                yield plane, filesystem
            finally:
                plane.close()
            return
        base = Path(tempfile.mkdtemp(prefix="arc-full-pg-"))
        os.chmod(base, 0o755)
        (base / "wal").mkdir()
        postgres = PostgresServer.start(filesystem / "pg", free_port(), wal_dir=base / "wal" / "pg_wal")
        plane = Plane(postgres.new_database(), base / "data")
        try:
            yield plane, filesystem
        finally:
            plane.close()
            postgres.stop()
            subprocess.run(["rm", "-rf", str(base)], check=False)


def test_a_full_disk_refuses_writes_clearly_serves_reads_and_recovers_at_once(
    full_disk_plane: tuple[Plane, Path],
) -> None:
    plane, filesystem = full_disk_plane
    agent = AgentClient(plane.http, plane.issuer.public_url)
    registration = agent.registration(subscription_id=plane.subscription, tenant_id=plane.tenant,
                                      resource_group=GROUP, name="agent-1")  # fmt: skip
    assert agent.register(plane.token, registration).status_code == 201
    acknowledged = []
    for index in range(5):
        reply = plane.call("PUT", plane.machine_path(f"before-{index}"), json={"location": "westeurope"})
        assert reply.status_code == 200, reply.text
        acknowledged.append(f"before-{index}")

    filler = fill(filesystem)
    refused = 0
    for index in range(40):  # enough new rows that the database must grow
        body = {"location": "westeurope", "tags": {f"t{n}": "x" * 200 for n in range(40)}}
        reply = plane.call("PUT", plane.machine_path(f"during-{index}"), json=body)
        if reply.status_code == 200:
            acknowledged.append(f"during-{index}")
            continue
        assert reply.status_code == 507, reply.text
        assert reply.json()["error"]["code"] == "InsufficientStorage"
        assert "no space left" in reply.json()["error"]["message"]
        assert int(reply.headers["Retry-After"]) > 0
        refused += 1
    assert refused > 0, "the full disk refused no write"
    beat = agent.heartbeat()
    assert beat.status_code in (200, 507), beat.text
    if beat.status_code == 507:
        assert "Retry-After" in beat.headers
    assert plane.call("GET", plane.machine_path("before-0")).status_code == 200
    listed = plane.call(
        "GET", f"/subscriptions/{plane.subscription}/providers/Microsoft.HybridCompute/machines?{API}"
    )
    assert listed.status_code == 200 and len(listed.json()["value"]) >= 5
    assert plane.sign_in(plane.secret).status_code == 200  # signing in reads only
    assert plane.sign_in("wrong-secret").status_code == 401  # its audit entry cannot be written yet

    filler.unlink()
    reply = plane.call("PUT", plane.machine_path("after"), json={"location": "westeurope"})
    assert reply.status_code == 200, reply.text
    acknowledged.append("after")
    assert agent.heartbeat().status_code == 200

    # The held entry goes in with the next audit write, which the server makes just after its
    # answer (auditwait.py): wait for it rather than read at once.
    entries = audit_entries(plane.db, plane.client_id, 1)
    failed_sign_ins = [entry for entry in entries if entry.action == "token/failed"]
    with plane.db.session() as session:
        names = set(session.scalars(select(Machine.name)))
        if plane.db.engine.dialect.name == "sqlite":
            assert session.execute(text("PRAGMA integrity_check")).scalar() == "ok"
    assert set(acknowledged) <= names
    assert len(failed_sign_ins) == 1, "the failed sign-in's audit entry was lost"
    log = plane.server.log()
    assert "Traceback" not in log and "Internal" not in log, log
