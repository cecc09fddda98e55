"""Hostile input to the management and agent APIs (issue 10, findings 1 and 10), against a
running server over HTTPS, on SQLite and PostgreSQL.

Finding 1: a tag holding an unpaired surrogate (valid JSON, not text) used to be stored, after
which GET of the machine and every list of its group and subscription answered 500 for every
caller. Bodies are now refused at the edge; a row an older version stored renders with U+FFFD
and never takes a list down; migration 0002 repairs such rows.
Finding 10: machine names ``.`` and ``..`` were accepted, and ordinary HTTP clients could then
neither reach nor delete them.
"""

from __future__ import annotations

import datetime as dt
import http.client
import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic import command
from armenv import HC, RG_VERSION, ArmEnv, arm_environment, error_of
from conftest import ca_context
from sqlalchemy import insert, select

from arc_controlplane.db.engine import Database
from arc_controlplane.db.migrate import alembic_config, upgrade
from arc_controlplane.db.tables import Machine, ResourceGroup

GROUP = "hostile"
SURROGATE_TAGS = '{"location": "westeurope", "tags": {"owner": "\\ud800"}}'


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def arm(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ArmEnv]:
    with arm_environment(request, tmp_path_factory) as env:
        env.add_group(GROUP)
        yield env


def raw(
    arm: ArmEnv, method: str, path: str, body: str | None = None, caller: str = "owner"
) -> tuple[int, str]:
    """A request sent with ``path`` exactly as given (no client-side normalisation of ``.``)."""
    connection = http.client.HTTPSConnection(
        "127.0.0.1", arm.server.port, context=ca_context(arm.server.ca_file)
    )
    try:
        headers = {"Authorization": f"Bearer {arm.callers[caller].token}"}
        if body is not None:
            headers["Content-Type"] = "application/json"
        connection.request(method, path, body=body, headers=headers)
        reply = connection.getresponse()
        return reply.status, reply.read().decode()
    finally:
        connection.close()


def lists_answer(arm: ArmEnv, caller: str) -> None:
    for path in (arm.sub + "/providers/Microsoft.HybridCompute/machines",
                 arm.group(GROUP) + "/providers/Microsoft.HybridCompute/machines"):  # fmt: skip
        reply = arm.call("GET", path, caller=caller)
        assert reply.status_code == 200, reply.text


@pytest.mark.parametrize("caller", ["onboarding", "owner"])
def test_a_tag_with_an_unpaired_surrogate_is_refused_and_nothing_is_stored(arm: ArmEnv, caller: str) -> None:
    name = f"surrogate-{caller}"
    reply = arm.call(
        "PUT", arm.machine(GROUP, name), caller=caller, content=SURROGATE_TAGS,
        headers={"Content-Type": "application/json"},
    )  # fmt: skip
    assert reply.status_code == 400, reply.text
    error = error_of(reply)
    assert error["code"] == "InvalidRequestContent"
    assert "tags.owner" in error["message"] and "surrogate" in error["message"]
    assert arm.machine_row(GROUP, name) is None
    assert arm.call("GET", arm.machine(GROUP, name), caller="reader").status_code == 404
    lists_answer(arm, "reader")


def test_surrogates_are_refused_anywhere_in_a_body(arm: ArmEnv) -> None:
    arm.call("PUT", arm.machine(GROUP, "patched"), json={"location": "westeurope"}).raise_for_status()
    bodies = {
        "PATCH": (
            '{"properties": {"locationData": {"name": "Par\\udc00is"}}}',
            "properties.locationData.name",
        ),
        "PUT": ('{"location": "westeurope", "tags": {"\\ud83d": "x"}}', "tags."),
    }
    for method, (body, where) in bodies.items():
        status, text = raw(arm, method, arm.machine(GROUP, "patched") + f"?api-version={HC}", body)
        assert status == 400, text
        assert where in json.loads(text)["error"]["message"]
    group_body = '{"location": "westeurope", "tags": {"a": "\\udfff"}}'
    status, text = raw(arm, "PUT", arm.group("surrogate-group") + f"?api-version={RG_VERSION}", group_body)
    assert status == 400, text
    machine = arm.call("GET", arm.machine(GROUP, "patched")).json()
    assert "locationData" not in machine["properties"]


def test_a_pair_of_surrogates_is_text_and_is_kept(arm: ArmEnv) -> None:
    body = '{"location": "westeurope", "tags": {"emoji": "\\ud83d\\ude00"}}'
    status, text = raw(arm, "PUT", arm.machine(GROUP, "emoji") + f"?api-version={HC}", body)
    assert status == 200, text
    assert arm.call("GET", arm.machine(GROUP, "emoji")).json()["tags"] == {"emoji": "\U0001f600"}


def test_a_row_stored_by_an_older_version_renders_and_does_not_take_lists_down(arm: ArmEnv) -> None:
    arm.add_machines(GROUP, ["stored-bad", "stored-good"])
    with arm.db.session() as session:
        row = session.scalars(select(Machine).where(Machine.name == "stored-bad")).one()
        row.tags = {"owner": "\ud800", "\udfff": "x"}
    reply = arm.call("GET", arm.machine(GROUP, "stored-bad"), caller="reader")
    assert reply.status_code == 200, reply.text
    assert reply.json()["tags"] == {"owner": "\ufffd", "\ufffd": "x"}
    listed = arm.call("GET", arm.sub + "/providers/Microsoft.HybridCompute/machines", caller="reader").json()
    names = {machine["name"] for machine in listed["value"]}
    assert {"stored-bad", "stored-good"} <= names
    lists_answer(arm, "reader")
    assert "unpaired surrogate" in arm.server.log()


def test_the_agent_api_refuses_surrogates_too(arm: ArmEnv) -> None:
    token = arm.callers["onboarding"].token
    body = json.dumps({"subscriptionId": arm.subscription_id, "resourceGroup": GROUP})[:-1]
    body += ', "resourceName": "x\\ud800"}'  # an unpaired surrogate, escaped as JSON allows
    connection = http.client.HTTPSConnection(
        "127.0.0.1", arm.server.port, context=ca_context(arm.server.ca_file)
    )
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    connection.request("POST", "/agent/v1/register", body=body, headers=headers)
    reply = connection.getresponse()
    assert reply.status == 400, reply.read()
    connection.close()


@pytest.mark.parametrize("name", [".", "..", "web.", "a.b."])
def test_machine_names_follow_azure_rules(arm: ArmEnv, name: str) -> None:
    path = arm.machine(GROUP, name) + f"?api-version={HC}"
    status, text = raw(arm, "PUT", path, '{"location": "westeurope"}')
    assert status == 400, text
    error = json.loads(text)["error"]
    assert error["code"] == "InvalidResourceName"
    assert "not ending in '.'" in error["message"]
    with arm.db.session() as session:
        assert session.scalars(select(Machine).where(Machine.name == name)).first() is None


def test_migration_0002_repairs_rows_stored_before_it(tmp_path: Path) -> None:
    db = Database.open(f"sqlite:///{tmp_path / 'old.db'}")
    try:
        command.upgrade(alembic_config(db.engine), "0001")
        now = dt.datetime.now(dt.UTC)
        with db.engine.begin() as connection:
            connection.exec_driver_sql(
                "INSERT INTO tenants (id, display_name, created_at) VALUES ('t', 't', ?)", (now,)
            )
            connection.exec_driver_sql(
                "INSERT INTO subscriptions (id, tenant_id, display_name, created_at) "
                "VALUES ('s', 't', 's', ?)",
                (now,),
            )
        with db.session() as session:
            session.add(ResourceGroup(subscription_id="s", name="g", name_lower="g", location="westeurope",
                                      tags={"a": "\ud800"}, created_at=now))  # fmt: skip
            # Core, not the ORM: the model has columns that later migrations add.
            session.execute(insert(Machine).values(
                resource_id="/m", resource_id_lower="/m", subscription_id="s", resource_group_lower="g",
                name="m", name_lower="m", location="westeurope", tags={"\udc00": "b"},
                vm_id=str(uuid.uuid4()), tenant_id="t", properties={"locationData": {"name": "x\ud800"}},
                provisioning_state="Succeeded", connected=False, error_details=[], generation=0,
                last_status_change=now, created_at=now, updated_at=now,
            ))  # fmt: skip
        upgrade(db.engine)
        with db.session() as session:
            assert session.scalars(select(ResourceGroup)).one().tags == {"a": "\ufffd"}
            machine = session.scalars(select(Machine)).one()
            assert machine.tags == {"\ufffd": "b"}
            assert machine.properties == {"locationData": {"name": "x\ufffd"}}
    finally:
        db.dispose()
