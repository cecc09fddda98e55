"""Failed sign-ins are limited (issue 10, finding 4): wrong secrets were checked at 48/s and
unknown client ids at 263/s without a 429, concurrent attempts drove the server to 651 MB, and
every failure added an audit row, never pruned."""

from __future__ import annotations

import concurrent.futures
import datetime as dt
import math
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from conftest import Server, ca_context, start_server
from sqlalchemy import func, select

from arc_controlplane.auth.principals import create_service_principal, ensure_tenant
from arc_controlplane.db.engine import Database
from arc_controlplane.db.tables import AuditEntry

SCOPE = "https://management.azure.com/.default"


class Plane:
    def __init__(self, server: Server, db: Database) -> None:
        self.server, self.db = server, db
        self.tenant = str(uuid.uuid4())
        now = dt.datetime.now(dt.UTC)
        with db.session() as session:
            ensure_tenant(session, self.tenant, "t", now)
            created = create_service_principal(session, tenant_id=self.tenant, display_name="fleet", now=now)
            self.client_id, self.secret = created.principal.app_id, str(created.client_secret)

    def sign_in(self, secret: str, client_id: str | None = None, source: str = "127.0.0.1") -> httpx.Response:
        transport = httpx.HTTPTransport(local_address=source, verify=ca_context(self.server.ca_file))
        with httpx.Client(base_url=self.server.url(""), transport=transport, timeout=60) as client:
            return client.post(f"/{self.tenant}/oauth2/v2.0/token", data={
                "grant_type": "client_credentials", "client_id": client_id or self.client_id,
                "client_secret": secret, "scope": SCOPE})  # fmt: skip

    def audit_count(self, action: str) -> int:
        with self.db.session() as session:
            return int(session.scalar(select(func.count()).where(AuditEntry.action == action)) or 0)

    def peak_memory_mib(self) -> float:
        status = Path(f"/proc/{self.server.process.pid}/status").read_text()
        line = next(line for line in status.splitlines() if line.startswith("VmHWM:"))
        return int(line.split()[1]) / 1024


@pytest.fixture
def plane(tmp_path: Path) -> Iterator[Plane]:
    url = f"sqlite:///{tmp_path / 'cp.db'}"
    server = start_server(tmp_path / "data", ["--database-url", url])
    db = Database.open(url)
    try:
        yield Plane(server, db)
    finally:
        db.dispose()
        server.stop()


def test_wrong_secrets_get_429_with_retry_after_and_other_addresses_still_sign_in(plane: Plane) -> None:
    statuses = [plane.sign_in("wrong").status_code for _ in range(10)]
    assert statuses == [401] * 10
    throttled = plane.sign_in("wrong")
    assert throttled.status_code == 429, throttled.text
    assert throttled.json()["error"] == "temporarily_unavailable"
    assert 1 <= int(throttled.headers["Retry-After"]) <= 10
    assert "AADSTS50053" in throttled.json()["error_description"]
    assert plane.sign_in(plane.secret).status_code == 429  # the pair waits, right secret or not
    assert plane.sign_in(plane.secret, source="127.0.0.2").status_code == 200  # the real client elsewhere
    assert plane.audit_count("token/failed") == 10  # the 429s are not audited one by one
    with plane.db.session() as session:
        details = list(session.scalars(select(AuditEntry.detail).where(AuditEntry.action == "token/failed")))
    assert sum("refused for" in detail for detail in details) == 1


def test_unknown_client_ids_from_one_address_are_throttled(plane: Plane) -> None:
    statuses = [
        plane.sign_in("x", client_id=str(uuid.uuid4()), source="127.0.0.3").status_code for _ in range(40)
    ]
    assert statuses[:30] == [401] * 30
    assert set(statuses[30:]) == {429}
    assert plane.sign_in(plane.secret, source="127.0.0.4").status_code == 200


def test_concurrent_wrong_secrets_do_not_blow_up_memory_or_the_audit_log(plane: Plane) -> None:
    sources = [f"127.0.{1 + n // 250}.{1 + n % 250}" for n in range(400)]  # 400 addresses
    started = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(max_workers=64) as pool:
        statuses = list(pool.map(lambda source: plane.sign_in("wrong", source=source).status_code, sources))
    allowed = 100 + math.ceil(time.monotonic() - started)  # the client's burst, then one a second
    assert set(statuses) <= {401, 429}
    assert statuses.count(429) > 0
    assert statuses.count(401) <= allowed, "the per-client allowance let too many guesses through"
    assert plane.peak_memory_mib() < 250, f"peak resident memory {plane.peak_memory_mib():.0f} MiB"
    assert plane.audit_count("token/failed") <= allowed
    assert plane.sign_in(plane.secret, source="127.0.9.9").status_code in (200, 429)
