"""Machines (``Microsoft.HybridCompute/machines``) through the management API, against a running
server over HTTPS, on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import http.client
import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from armenv import HC, ArmEnv, arm_environment, error_of
from conftest import ca_context

from arc_controlplane.auth.principals import create_managed_identity
from arc_controlplane.machines.view import ALWAYS, OBJECTS

GROUP = "Fleet-A"
SDK_DEFAULT = "2026-07-15"


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def arm(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ArmEnv]:
    with arm_environment(request, tmp_path_factory) as env:
        env.add_group(GROUP)
        env.add_principal("fleet-reader", "Reader", env.group(GROUP))
        yield env


def utc(text: str) -> dt.datetime:
    parsed = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    assert parsed.tzinfo is not None and parsed.utcoffset() == dt.timedelta(0)
    return parsed


def test_pre_create_a_machine_awaiting_connection(arm: ArmEnv) -> None:
    vm_id = str(uuid.uuid4())
    scope = f"{arm.group('net')}/providers/Microsoft.HybridCompute/privateLinkScopes/pls"
    body = {
        "location": "West Europe",
        "tags": {"env": "prod"},
        "identity": {"type": "SystemAssigned"},
        "kind": "vmware",
        "properties": {
            "vmId": vm_id.upper(),
            "clientPublicKey": "MIIBIjANBg",
            "locationData": {"name": "Paris", "countryOrRegion": "fr"},
            "osProfile": {"linuxConfiguration": {"patchSettings": {"assessmentMode": "imagedefault"}}},
            "privateLinkScopeResourceId": scope,
            "mssqlDiscovered": "false",
            "status": "Connected",  # read-only: ignored
            "provisioningState": "Failed",  # read-only: ignored
            "osName": "ignored",
        },
    }
    reply = arm.call("PUT", arm.machine(GROUP, "web-01"), caller="onboarding", json=body)
    assert reply.status_code == 200, reply.text
    machine = reply.json()
    assert machine["id"] == (
        f"/subscriptions/{arm.subscription_id}/resourceGroups/{GROUP}/providers/Microsoft.HybridCompute/machines/web-01"
    )
    assert (machine["name"], machine["type"], machine["location"]) == (
        "web-01",
        "Microsoft.HybridCompute/machines",
        "westeurope",
    )
    assert (machine["tags"], machine["kind"]) == ({"env": "prod"}, "VMware")
    assert "identity" not in machine  # no identity until an agent connects
    properties = machine["properties"]
    assert properties["status"] == "AwaitingConnection"
    assert properties["statusReason"] is None
    assert properties["provisioningState"] == "Succeeded"
    assert properties["vmId"] == vm_id
    assert properties["clientPublicKey"] == "MIIBIjANBg"
    assert properties["locationData"] == {"name": "Paris", "countryOrRegion": "fr"}
    assert properties["osProfile"] == {
        "linuxConfiguration": {"patchSettings": {"assessmentMode": "ImageDefault"}}
    }
    assert properties["osName"] is None and properties["agentVersion"] is None
    # text properties are always there (null when unknown), objects only when the machine has them
    assert set(ALWAYS) - OBJECTS <= set(properties)
    assert {name for name in OBJECTS if name in properties} == {"locationData", "osProfile"}
    assert properties["errorDetails"] == []
    assert None not in [properties[name] for name in OBJECTS & set(properties)]
    assert abs(utc(properties["lastStatusChange"]) - dt.datetime.now(dt.UTC)) < dt.timedelta(minutes=1)

    read = arm.call("GET", arm.machine(GROUP, "web-01"), caller="reader")
    assert read.status_code == 200 and read.json() == machine
    assert read.headers["content-type"] == "application/json"
    expanded = arm.call("GET", arm.machine(GROUP, "web-01"), params={"$expand": "instanceView"})
    assert expanded.status_code == 200
    unknown = arm.call("GET", arm.machine(GROUP, "web-01"), params={"$expand": "everything"})
    assert unknown.status_code == 400 and error_of(unknown)["code"] == "InvalidParameter"


def test_put_again_updates_and_keeps_identity_fields(arm: ArmEnv) -> None:
    path = arm.machine(GROUP, "web-02")
    first = arm.call("PUT", path, json={"location": "eastus", "tags": {"a": "1"}}).json()
    vm_id = first["properties"]["vmId"]
    again = arm.call(
        "PUT", path, json={"location": "East US", "properties": {"vmId": vm_id, "mssqlDiscovered": "true"}}
    )
    assert again.status_code == 200
    assert again.json()["tags"] == {}  # PUT replaces the tags
    assert again.json()["properties"]["mssqlDiscovered"] == "true"
    moved = arm.call("PUT", path, json={"location": "westus"})
    assert moved.status_code == 409 and error_of(moved)["code"] == "InvalidResourceLocation"
    renumbered = arm.call("PUT", path, json={"location": "eastus", "properties": {"vmId": str(uuid.uuid4())}})
    assert renumbered.status_code == 409 and error_of(renumbered)["code"] == "PropertyChangeNotAllowed"
    twin = arm.call(
        "PUT", arm.machine(GROUP, "web-02-twin"), json={"location": "eastus", "properties": {"vmId": vm_id}}
    )
    assert twin.status_code == 409 and vm_id in error_of(twin)["message"]


def test_missing_groups_and_machines_are_404(arm: ArmEnv) -> None:
    no_group = arm.call("PUT", arm.machine("no-such-group", "m"), json={"location": "eastus"})
    assert no_group.status_code == 404 and error_of(no_group)["code"] == "ResourceGroupNotFound"
    no_machine = arm.call("GET", arm.machine(GROUP, "no-such-machine"))
    assert no_machine.status_code == 404
    error = error_of(no_machine)
    assert error["code"] == "ResourceNotFound"
    assert "Microsoft.HybridCompute/machines/no-such-machine" in error["message"]
    assert arm.call("PATCH", arm.machine(GROUP, "no-such-machine"), json={"tags": {}}).status_code == 404


def test_patch_changes_tags_and_settable_properties(arm: ArmEnv) -> None:
    path = arm.machine(GROUP, "db-01")
    arm.call(
        "PUT", path, json={"location": "eastus", "tags": {"old": "1"}, "properties": {"mssqlDiscovered": "x"}}
    )
    patched = arm.call(
        "PATCH",
        path,
        caller="admin",
        json={
            "tags": {"new": "2"},
            "properties": {"locationData": {"name": "Lyon"}, "identityKeyStore": "tpm"},
        },
    )
    assert patched.status_code == 200, patched.text
    machine = patched.json()
    assert machine["tags"] == {"new": "2"}
    assert machine["properties"]["locationData"] == {"name": "Lyon"}
    assert machine["properties"]["identityKeyStore"] == "TPM"
    assert machine["properties"]["mssqlDiscovered"] == "x"  # PATCH leaves what it does not name
    cleared = arm.call("PATCH", path, caller="onboarding", json={"properties": {"locationData": None}})
    assert cleared.status_code == 200  # Onboarding has machines/write (PATCH), not delete
    assert "locationData" not in cleared.json()["properties"]  # an object it lacks is left out
    assert cleared.json()["tags"] == {"new": "2"}
    refused = arm.call("PATCH", path, caller="reader", json={"tags": {}})
    assert refused.status_code == 403 and error_of(refused)["code"] == "AuthorizationFailed"


def test_patching_agent_upgrade_bumps_the_generation(arm: ArmEnv) -> None:
    path = arm.machine(GROUP, "upgrade-me")
    arm.call("PUT", path, json={"location": "eastus"})
    arm.publish_agent("1.46.2880.1961")
    before = arm.machine_row(GROUP, "upgrade-me")
    assert before is not None
    correlation = str(uuid.uuid4())
    upgrade = {
        "properties": {"agentUpgrade": {"desiredVersion": "1.46.02880.1961", "correlationId": correlation}}
    }
    reply = arm.call("PATCH", path, caller="admin", json=upgrade)
    assert reply.status_code == 200, reply.text
    assert reply.json()["properties"]["agentUpgrade"] == {
        "desiredVersion": "1.46.02880.1961",
        "correlationId": correlation,
    }
    after = arm.machine_row(GROUP, "upgrade-me")
    assert after is not None and after.generation == before.generation + 1
    assert arm.call("PATCH", path, json=upgrade).status_code == 200  # the same again: no new work
    same = arm.machine_row(GROUP, "upgrade-me")
    assert same is not None and same.generation == after.generation
    # new tags are work too (the agent shows its resource's tags); the same tags again are not
    assert arm.call("PATCH", path, json={"tags": {"x": "y"}}).status_code == 200
    assert arm.call("PATCH", path, json={"tags": {"x": "y"}}).status_code == 200
    tagged = arm.machine_row(GROUP, "upgrade-me")
    assert tagged is not None and tagged.generation == after.generation + 1
    merged = arm.call("PATCH", path, json={"properties": {"agentUpgrade": {"enableAutomaticUpgrade": True}}})
    assert merged.json()["properties"]["agentUpgrade"] == {
        "desiredVersion": "1.46.02880.1961",
        "correlationId": correlation,
        "enableAutomaticUpgrade": True,
    }
    last = arm.machine_row(GROUP, "upgrade-me")
    assert last is not None and last.generation == tagged.generation + 1


def test_delete_answers_202_with_an_operation_that_succeeded(arm: ArmEnv) -> None:
    now = dt.datetime.now(dt.UTC)
    with arm.db.session() as session:
        identity = create_managed_identity(session, tenant_id=arm.tenant_id, display_name="doomed", now=now)
        principal_id = identity.id
    arm.add_machines(GROUP, ["doomed"], connected=True, principal_id=principal_id, last_heartbeat=now)
    path = arm.machine(GROUP, "doomed")

    refused = arm.call("DELETE", path, caller="onboarding")
    assert refused.status_code == 403
    error = error_of(refused)
    assert error["code"] == "AuthorizationFailed"
    assert "Microsoft.HybridCompute/machines/delete" in error["message"]
    assert arm.machine_row(GROUP, "doomed") is not None

    reply = arm.call("DELETE", path, caller="admin", api_version=SDK_DEFAULT)
    assert reply.status_code == 202, reply.text
    assert reply.content == b""
    assert reply.headers["retry-after"] == "1"
    status_url = reply.headers["azure-asyncoperation"]
    result_url = reply.headers["location"]
    prefix = arm.server.url(f"{arm.sub}/providers/Microsoft.HybridCompute/locations/westeurope/")
    assert status_url.startswith(prefix + "operationStatus/") and status_url.endswith(
        f"?api-version={SDK_DEFAULT}"
    )
    assert result_url.startswith(prefix + "operationResults/")
    auth = {"Authorization": f"Bearer {arm.callers['admin'].token}"}
    with arm.client() as client:
        status = client.get(status_url, headers=auth)
        result = client.get(result_url, headers=auth)
        foreign = client.get(status_url, headers={"Authorization": f"Bearer {arm.callers['nobody'].token}"})
    assert status.status_code == 200
    operation = status.json()
    operation_id = status_url.split("/")[-1].split("?")[0]
    assert operation["status"] == "Succeeded"
    assert operation["name"] == operation_id
    assert (
        operation["id"]
        == f"{arm.sub}/providers/Microsoft.HybridCompute/locations/westeurope/operationStatus/{operation_id}"
    )
    assert operation["resourceId"].lower() == path.lower()
    assert utc(operation["startTime"]) <= utc(operation["endTime"])
    assert "error" not in operation
    assert result.status_code == 204
    assert foreign.status_code == 403

    gone = arm.call("GET", path)
    assert gone.status_code == 404 and error_of(gone)["code"] == "ResourceNotFound"
    assert not arm.principal_exists(principal_id)
    assert arm.call("DELETE", path, caller="admin").status_code == 204

    entries = arm.audit_entries(path, 3)
    assert [(e.principal_name, e.action, e.result) for e in entries] == [
        ("onboarding", "Microsoft.HybridCompute/machines/delete", "Denied:403"),
        ("admin", "Microsoft.HybridCompute/machines/delete", "Succeeded:202"),
        ("admin", "Microsoft.HybridCompute/machines/delete", "Succeeded:204"),
    ]


def test_operation_status_of_unknown_and_malformed_ids(arm: ArmEnv) -> None:
    base = f"{arm.sub}/providers/Microsoft.HybridCompute/locations/westeurope/operationStatus"
    unknown = arm.call("GET", f"{base}/{uuid.uuid4()}")
    assert unknown.status_code == 404 and error_of(unknown)["code"] == "OperationNotFound"
    malformed = arm.call("GET", f"{base}/not-a-guid")
    assert malformed.status_code == 400


def test_changes_are_audited(arm: ArmEnv) -> None:
    path = arm.machine(GROUP, "audited")
    assert arm.call("PUT", path, caller="reader", json={"location": "eastus"}).status_code == 403
    assert arm.call("PUT", path, caller="onboarding", json={"location": "eastus"}).status_code == 200
    assert arm.call("PATCH", path, caller="admin", json={"tags": {"a": "b"}}).status_code == 200
    assert arm.call("PATCH", path, caller="admin", json={"tags": "nope"}).status_code == 400
    entries = arm.audit_entries(path, 4)
    assert [(e.principal_name, e.action.rsplit("/", 1)[1], e.result, e.detail) for e in entries] == [
        ("reader", "write", "Denied:403", ""),
        ("onboarding", "write", "Succeeded:200", "created"),
        ("admin", "write", "Succeeded:200", "changed tags"),
        ("admin", "write", "Failed:400", ""),
    ]
    assert all(e.target == path for e in entries)


def collect(arm: ArmEnv, path: str, caller: str = "owner") -> tuple[list[str], int]:
    """Every machine name of a list, following nextLink; and the number of pages."""
    names: list[str] = []
    reply = arm.call("GET", path, caller=caller)
    pages = 1
    while True:
        assert reply.status_code == 200, reply.text
        body = reply.json()
        assert len(body["value"]) <= 100
        names += [machine["name"] for machine in body["value"]]
        if "nextLink" not in body:
            return names, pages
        with arm.client() as client:
            reply = client.get(
                body["nextLink"], headers={"Authorization": f"Bearer {arm.callers[caller].token}"}
            )
        pages += 1


def test_lists_page_with_next_link_and_show_only_what_the_caller_may_read(arm: ArmEnv) -> None:
    arm.add_group("big")
    fleet = [f"node-{index:03}" for index in range(150)]
    arm.add_machines("big", fleet)
    group_list = f"{arm.group('big')}/providers/Microsoft.HybridCompute/machines"
    first = arm.call("GET", group_list, params={"$expand": "instanceView"}).json()
    assert len(first["value"]) == 100
    assert first["nextLink"].startswith(arm.server.url(group_list + "?"))
    assert "%24expand=instanceView" in first["nextLink"] or "$expand=instanceView" in first["nextLink"]
    names, pages = collect(arm, group_list)
    assert (sorted(names), pages) == (fleet, 2)

    subscription_list = f"{arm.sub}/providers/Microsoft.HybridCompute/machines"
    everything, pages = collect(arm, subscription_list, "reader")
    assert set(fleet) <= set(everything) and len(everything) == len(set(everything)) and pages >= 2
    arm.add_principal("big-reader", "Reader", arm.group("big"))
    mine, _ = collect(arm, subscription_list, "big-reader")
    assert sorted(mine) == fleet
    theirs = arm.call(
        "GET", f"{arm.group(GROUP)}/providers/Microsoft.HybridCompute/machines", caller="big-reader"
    )
    assert theirs.status_code == 403
    for path in (group_list, subscription_list):
        refused = arm.call("GET", path, caller="nobody")
        assert refused.status_code == 403 and error_of(refused)["code"] == "AuthorizationFailed"
    missing = arm.call("GET", f"{arm.group('nowhere')}/providers/Microsoft.HybridCompute/machines")
    assert missing.status_code == 404 and error_of(missing)["code"] == "ResourceGroupNotFound"


def test_status_follows_heartbeats_and_credentials(arm: ArmEnv) -> None:
    now = dt.datetime.now(dt.UTC)
    long_ago = now - dt.timedelta(days=3)
    reported = {
        "osName": "linux",
        "osType": "linux",
        "osVersion": "6.1.0",
        "osSku": "Debian GNU/Linux 12 (bookworm)",
        "machineFqdn": "h1.example",
        "displayName": "h1",
        "detectedProperties": {"cloudprovider": "N/A", "manufacturer": "QEMU"},
        "serviceStatuses": {"extensionService": {"status": "Running", "startupType": "Automatic"}},
        "internalNote": "not an ARM property",
    }
    common: dict[str, Any] = {
        "connected": True,
        "last_status_change": long_ago,
        "agent_version": "1.46.02880.1961",
    }
    arm.add_machines(
        GROUP,
        ["fresh"],
        **common,
        last_heartbeat=now - dt.timedelta(minutes=1),
        credential_not_after=now + dt.timedelta(days=80),
        principal_id="11111111-2222-3333-4444-555555555555",
        properties=reported,
    )
    arm.add_machines(GROUP, ["silent"], **common, last_heartbeat=now - dt.timedelta(minutes=20))
    arm.add_machines(
        GROUP,
        ["lapsed"],
        **common,
        last_heartbeat=now - dt.timedelta(minutes=1),
        credential_not_after=now - dt.timedelta(hours=1),
    )
    arm.add_machines(
        GROUP,
        ["failing"],
        **common,
        last_heartbeat=now,
        error_details=[{"code": "AZCM0042", "message": "disk full"}],
    )

    fresh = arm.call("GET", arm.machine(GROUP, "FRESH")).json()
    assert fresh["identity"] == {
        "type": "SystemAssigned",
        "principalId": "11111111-2222-3333-4444-555555555555",
        "tenantId": arm.tenant_id,
    }
    properties = fresh["properties"]
    assert (properties["status"], properties["statusReason"]) == ("Connected", None)
    assert properties["agentVersion"] == "1.46.02880.1961"
    assert {key: properties[key] for key in reported if key != "internalNote"} == {
        key: value for key, value in reported.items() if key != "internalNote"
    }
    assert "internalNote" not in properties
    assert "hardwareProfile" not in properties  # never null where clients expect an object

    silent = arm.call("GET", arm.machine(GROUP, "silent")).json()["properties"]
    assert (silent["status"], silent["statusReason"]) == ("Disconnected", None)
    assert abs(utc(silent["lastStatusChange"]) - (now - dt.timedelta(minutes=5))) < dt.timedelta(seconds=5)
    lapsed = arm.call("GET", arm.machine(GROUP, "lapsed")).json()["properties"]
    assert (lapsed["status"], lapsed["statusReason"]) == ("Disconnected", "Expired")
    failing = arm.call("GET", arm.machine(GROUP, "failing")).json()["properties"]
    assert failing["status"] == "Error"
    assert failing["errorDetails"] == [{"code": "AZCM0042", "message": "disk full"}]


def test_machine_paths_are_case_insensitive(arm: ArmEnv) -> None:
    arm.call("PUT", arm.machine(GROUP, "CaseHost"), json={"location": "eastus"})
    shouted = (
        f"/SUBSCRIPTIONS/{arm.subscription_id.upper()}/RESOURCEGROUPS/{GROUP.lower()}"
        "/PROVIDERS/microsoft.hybridcompute/MACHINES/casehost"
    )
    reply = arm.call("GET", shouted)
    assert reply.status_code == 200, reply.text
    assert reply.json()["id"] == arm.machine(GROUP, "CaseHost")
    assert reply.json()["name"] == "CaseHost"
    assert arm.call("PATCH", shouted, json={"tags": {"k": "v"}}).json()["tags"] == {"k": "v"}
    listed = arm.call(
        "GET", f"/Subscriptions/{arm.subscription_id}/Providers/Microsoft.HYBRIDCOMPUTE/Machines"
    )
    assert listed.status_code == 200


@pytest.mark.parametrize(
    "version", ["2019-12-12", "2022-08-11-preview", "2024-07-10", "2025-01-13", SDK_DEFAULT, "2026-09-01"]
)
def test_every_supported_api_version_is_served(arm: ArmEnv, version: str) -> None:
    reply = arm.call("GET", f"{arm.sub}/providers/Microsoft.HybridCompute/machines", api_version=version)
    assert reply.status_code == 200


def test_unsupported_and_missing_api_versions(arm: ArmEnv) -> None:
    path = arm.machine(GROUP, "any")
    for version in ("2015-01-01", "2026-09-01-preview", "latest"):
        reply = arm.call("GET", path, api_version=version)
        assert reply.status_code == 400
        error = error_of(reply)
        assert error["code"] == "InvalidApiVersionParameter"
        assert error["message"] == (
            f"The api-version '{version}' is invalid. The supported versions are "
            "'2026-09-01,2026-07-15,2026-06-16-preview,2025-09-16-preview,2025-02-19-preview,2025-01-13,"
            "2024-07-31-preview,2024-07-10,2024-05-20-preview,2024-03-31-preview,2023-10-03-preview,"
            "2023-06-20-preview,2022-08-11-preview,2022-03-10,2021-03-25-preview,2020-08-02,2019-12-12,"
            "2019-08-02-preview'."
        )
    missing = arm.call("DELETE", path, api_version=None, caller="admin")
    assert missing.status_code == 400 and error_of(missing)["code"] == "MissingApiVersionParameter"


BAD_BODIES: list[tuple[dict[str, Any], str]] = [
    ({"tags": {}}, "location: Field required"),
    ({"location": "eastus", "color": "blue"}, "color"),
    ({"location": "eastus", "properties": {"vmId": "nope"}}, "properties.vmId"),
    (
        {"location": "eastus", "properties": {"osProfile": {"computerName": "x", "extra": 1}}},
        "osProfile.extra",
    ),
    ({"location": "eastus", "properties": {"agentUpgrade": {"desiredVersion": "latest"}}}, "desiredVersion"),
    (
        {"location": "eastus", "properties": {"privateLinkScopeResourceId": "pls"}},
        "privateLinkScopeResourceId",
    ),
    ({"location": "eastus", "kind": "Mainframe"}, "kind"),
    ({"location": "eastus", "identity": {"type": "UserAssigned"}}, "identity.type"),
    ({"location": "eastus", "tags": {"a": True}}, "tags.a"),
    ({"location": "eastus", "tags": {f"t{i}": "v" for i in range(51)}}, "at most 50 tags"),
    ({"location": ["eastus"]}, "location"),
    ({"location": "eastus", "properties": {"mssqlDiscovered": False}}, "mssqlDiscovered"),
    ({"location": "eastus", "properties": {"locationData": {"name": "x\u0000y"}}}, "NUL"),
]


@pytest.mark.parametrize(("body", "fragment"), BAD_BODIES)
def test_bad_machine_bodies_are_400(arm: ArmEnv, body: dict[str, Any], fragment: str) -> None:
    reply = arm.call("PUT", arm.machine(GROUP, "bodies"), json=body)
    assert reply.status_code == 400, reply.text
    error = error_of(reply)
    assert error["code"] == "InvalidRequestContent"
    assert fragment in error["message"]


def test_patch_refuses_what_machine_update_does_not_have(arm: ArmEnv) -> None:
    arm.call("PUT", arm.machine(GROUP, "strict"), json={"location": "eastus"})
    bodies: list[dict[str, Any]] = [
        {"location": "westus"},
        {"properties": {"vmId": str(uuid.uuid4())}},
        {"tags": []},
    ]
    for body in bodies:
        reply = arm.call("PATCH", arm.machine(GROUP, "strict"), json=body)
        assert reply.status_code == 400, body
        assert error_of(reply)["code"] == "InvalidRequestContent"


def test_malformed_requests_are_4xx_in_arm_form(arm: ArmEnv) -> None:
    path = arm.machine(GROUP, "shapes")
    broken = arm.call("PUT", path, content=b'{"location": ', headers={"Content-Type": "application/json"})
    assert broken.status_code == 400 and error_of(broken)["code"] == "InvalidRequestContent"
    not_json = arm.call("PUT", path, content=b"location=eastus", headers={"Content-Type": "text/plain"})
    assert not_json.status_code == 415 and error_of(not_json)["code"] == "UnsupportedMediaType"
    not_object = arm.call("PUT", path, json=["eastus"])
    assert not_object.status_code == 400
    empty = arm.call("PUT", path)
    assert empty.status_code == 400 and error_of(empty)["code"] == "InvalidRequestContent"
    huge = arm.call(
        "PUT",
        path,
        content=b"{" + b" " * (1024 * 1024 + 1) + b"}",
        headers={"Content-Type": "application/json"},
    )
    assert huge.status_code == 413 and error_of(huge)["code"] == "RequestEntityTooLarge"
    bad_name = arm.call("PUT", arm.machine(GROUP, "no spaces"), json={"location": "eastus"})
    assert bad_name.status_code == 400 and error_of(bad_name)["code"] == "InvalidResourceName"
    too_long = arm.call("GET", arm.machine(GROUP, "x" * 55))
    assert too_long.status_code == 400


def test_a_chunked_oversized_body_is_413(arm: ArmEnv) -> None:
    connection = http.client.HTTPSConnection(
        "127.0.0.1", arm.server.port, context=ca_context(arm.server.ca_file)
    )
    try:
        connection.putrequest("PUT", f"{arm.machine(GROUP, 'chunky')}?api-version={HC}")
        connection.putheader("Authorization", f"Bearer {arm.callers['owner'].token}")
        connection.putheader("Content-Type", "application/json")
        connection.putheader("Transfer-Encoding", "chunked")
        connection.endheaders()
        chunk = b" " * 65536
        for _ in range(20):
            connection.send(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        connection.send(b"0\r\n\r\n")
        reply = connection.getresponse()
        status, body = reply.status, json.loads(reply.read())
    finally:
        connection.close()
    assert set(body) == {"error"}
    assert status == 413
