"""Resource groups, authentication, api-versions and case-insensitive paths of the management
API, against a running server over HTTPS, on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator

import pytest
from armenv import HC, RG_VERSION, ArmEnv, arm_environment, error_of
from sqlalchemy import select

from arc_controlplane.auth.principals import assign_role, create_service_principal, ensure_tenant
from arc_controlplane.db.tables import RoleAssignment


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def arm(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ArmEnv]:
    with arm_environment(request, tmp_path_factory) as env:
        yield env


def test_create_read_update_and_delete_a_group(arm: ArmEnv) -> None:
    path = arm.group("Prod-EU")
    created = arm.call(
        "PUT", path, api_version=RG_VERSION, json={"location": "West Europe", "tags": {"a": "1"}}
    )
    assert created.status_code == 201, created.text
    assert created.json() == {
        "id": f"/subscriptions/{arm.subscription_id}/resourceGroups/Prod-EU",
        "name": "Prod-EU",
        "type": "Microsoft.Resources/resourceGroups",
        "location": "westeurope",
        "tags": {"a": "1"},
        "properties": {"provisioningState": "Succeeded"},
    }
    updated = arm.call("PUT", path, api_version=RG_VERSION, json={"location": "westeurope"})
    assert updated.status_code == 200
    assert "tags" not in updated.json()  # PUT replaces: no tags given, none kept

    read = arm.call("GET", path, caller="reader", api_version=RG_VERSION)
    assert read.status_code == 200 and read.json()["name"] == "Prod-EU"
    assert arm.call("HEAD", path, caller="reader", api_version=RG_VERSION).status_code == 204
    assert arm.call("HEAD", arm.group("absent"), caller="reader", api_version=RG_VERSION).status_code == 404

    deleted = arm.call("DELETE", path, api_version=RG_VERSION)
    assert deleted.status_code == 200
    gone = arm.call("GET", path, api_version=RG_VERSION)
    assert gone.status_code == 404
    assert error_of(gone)["code"] == "ResourceGroupNotFound"
    again = arm.call("DELETE", path, api_version=RG_VERSION)
    assert again.status_code == 404


def test_a_group_keeps_its_location(arm: ArmEnv) -> None:
    path = arm.group("fixed-place")
    assert arm.call("PUT", path, api_version=RG_VERSION, json={"location": "eastus"}).status_code == 201
    moved = arm.call("PUT", path, api_version=RG_VERSION, json={"location": "westus"})
    assert moved.status_code == 409
    assert error_of(moved)["code"] == "InvalidResourceGroupLocation"


def test_a_group_with_machines_is_not_deleted(arm: ArmEnv) -> None:
    arm.add_group("busy")
    arm.add_machines("busy", ["m1", "m2"])
    refused = arm.call("DELETE", arm.group("busy"), api_version=RG_VERSION)
    assert refused.status_code == 409
    error = error_of(refused)
    assert error["code"] == "ResourceGroupNotEmpty"
    assert "2 machine(s): m1, m2" in error["message"]
    assert arm.call("GET", arm.group("busy"), api_version=RG_VERSION).status_code == 200


def test_deleting_a_group_removes_role_assignments_at_its_scope(arm: ArmEnv) -> None:
    arm.add_group("scoped")
    member = arm.add_principal("scoped-reader", "Reader", arm.group("scoped"))
    assert arm.call("DELETE", arm.group("scoped"), api_version=RG_VERSION).status_code == 200
    with arm.db.session() as session:
        left = session.scalars(
            select(RoleAssignment).where(RoleAssignment.principal_id == member.principal_id)
        ).all()
    assert left == []


def test_roles_decide_who_may_change_groups(arm: ArmEnv) -> None:
    path = arm.group("guarded")
    for caller in ("admin", "onboarding", "reader", "nobody"):
        refused = arm.call("PUT", path, caller=caller, api_version=RG_VERSION, json={"location": "eastus"})
        assert refused.status_code == 403, caller
        error = error_of(refused)
        assert error["code"] == "AuthorizationFailed"
        assert "Microsoft.Resources/subscriptions/resourceGroups/write" in error["message"]
    assert arm.call("GET", path, caller="nobody", api_version=RG_VERSION).status_code == 403
    # authorised but absent:
    assert arm.call("GET", path, caller="reader", api_version=RG_VERSION).status_code == 404


def test_the_list_pages_and_shows_only_what_the_caller_may_read(arm: ArmEnv) -> None:
    for index in range(105):
        arm.add_group(f"page-{index:03}")
    names: list[str] = []
    reply = arm.call("GET", f"{arm.sub}/resourcegroups", api_version=RG_VERSION)
    assert reply.status_code == 200
    pages = 1
    while True:
        body = reply.json()
        names += [group["name"] for group in body["value"]]
        if "nextLink" not in body:
            break
        assert body["nextLink"].startswith(arm.server.url(f"{arm.sub}/resourceGroups?"))
        with arm.client() as client:
            reply = client.get(
                body["nextLink"], headers={"Authorization": f"Bearer {arm.callers['owner'].token}"}
            )
        assert reply.status_code == 200, reply.text
        pages += 1
    assert pages >= 2
    assert len(names) == len(set(names))
    assert {f"page-{index:03}" for index in range(105)} <= set(names)

    arm.add_principal("page-7-reader", "Reader", arm.group("page-007"))
    mine = arm.call("GET", f"{arm.sub}/resourcegroups", caller="page-7-reader", api_version=RG_VERSION)
    assert [group["name"] for group in mine.json()["value"]] == ["page-007"]
    none = arm.call("GET", f"{arm.sub}/resourcegroups", caller="nobody", api_version=RG_VERSION)
    assert none.status_code == 403
    bad = arm.call("GET", f"{arm.sub}/resourcegroups", api_version=RG_VERSION, params={"$skiptoken": "nope"})
    assert bad.status_code == 400 and error_of(bad)["code"] == "InvalidSkipToken"


def test_paths_are_case_insensitive(arm: ArmEnv) -> None:
    arm.add_group("MixedCase")
    shouted = f"/SUBSCRIPTIONS/{arm.subscription_id.upper()}/RESOURCEGROUPS/MIXEDCASE"
    reply = arm.call("GET", shouted, api_version=RG_VERSION)
    assert reply.status_code == 200, reply.text
    assert reply.json()["id"] == f"/subscriptions/{arm.subscription_id}/resourceGroups/MixedCase"
    assert (
        arm.call(
            "GET", f"/Subscriptions/{arm.subscription_id}/ResourceGroups", api_version=RG_VERSION
        ).status_code
        == 200
    )


def test_api_version_is_required_and_checked(arm: ArmEnv) -> None:
    missing = arm.call("GET", arm.group("any"), api_version=None)
    assert missing.status_code == 400
    assert error_of(missing)["code"] == "MissingApiVersionParameter"
    wrong = arm.call("GET", arm.group("any"), api_version=HC)  # a HybridCompute version
    assert wrong.status_code == 400
    error = error_of(wrong)
    assert error["code"] == "InvalidApiVersionParameter"
    assert error["message"].startswith(
        f"The api-version '{HC}' is invalid. The supported versions are '2025-04-01,"
    )


def test_authentication(arm: ArmEnv) -> None:
    path = arm.group("any")
    anonymous = arm.call("GET", path, caller=None, api_version=RG_VERSION)
    assert anonymous.status_code == 401
    assert error_of(anonymous)["code"] == "InvalidAuthenticationToken"
    assert "Bearer" in anonymous.headers["www-authenticate"]
    garbage = arm.call(
        "GET", path, caller=None, api_version=RG_VERSION, headers={"Authorization": "Bearer not.a.token"}
    )
    assert garbage.status_code == 401
    owner = arm.callers["owner"]
    wrong_audience = arm.mint(owner.principal_id, owner.app_id, audience="https://vault.azure.net")
    refused = arm.call(
        "GET",
        path,
        caller=None,
        api_version=RG_VERSION,
        headers={"Authorization": f"Bearer {wrong_audience}"},
    )
    assert refused.status_code == 401


def test_a_principal_of_another_tenant_is_refused(arm: ArmEnv) -> None:
    other_tenant = str(uuid.uuid4())
    now = dt.datetime.now(dt.UTC)
    with arm.db.session() as session:
        ensure_tenant(session, other_tenant, "Elsewhere", now)
        stranger = create_service_principal(
            session, tenant_id=other_tenant, display_name="x", now=now
        ).principal
        assign_role(session, stranger, "Owner", arm.sub, now)  # even with a role here
        principal_id, app_id = stranger.id, stranger.app_id
    token = arm.mint(principal_id, app_id, tenant_id=other_tenant)
    reply = arm.call(
        "GET",
        arm.group("any"),
        caller=None,
        api_version=RG_VERSION,
        headers={"Authorization": f"Bearer {token}"},
    )
    assert reply.status_code == 401
    error = error_of(reply)
    assert error["code"] == "InvalidAuthenticationTokenTenant"
    assert arm.tenant_id in error["message"]


def test_subscriptions_and_names_are_checked(arm: ArmEnv) -> None:
    unknown = arm.call("GET", f"/subscriptions/{uuid.uuid4()}/resourceGroups/x", api_version=RG_VERSION)
    assert unknown.status_code == 404 and error_of(unknown)["code"] == "SubscriptionNotFound"
    malformed = arm.call("GET", "/subscriptions/not-a-guid/resourceGroups/x", api_version=RG_VERSION)
    assert malformed.status_code == 400 and error_of(malformed)["code"] == "InvalidSubscriptionId"
    bad_name = arm.call(
        "PUT", arm.group("ends-with-dot."), api_version=RG_VERSION, json={"location": "eastus"}
    )
    assert bad_name.status_code == 400 and error_of(bad_name)["code"] == "InvalidResourceGroup"


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"tags": {}}, "location"),
        ({"location": "eastus", "managedBy": "x"}, "managedBy"),
        ({"location": 5}, "location"),
        ({"location": "east/us"}, "location"),
        ({"location": "eastus", "tags": {"a/b": "c"}}, "tag name"),
        ({"location": "eastus", "tags": {"a": 1}}, "tags.a"),
    ],
)
def test_bad_group_bodies_are_400(arm: ArmEnv, body: dict[str, object], fragment: str) -> None:
    reply = arm.call("PUT", arm.group("bodies"), api_version=RG_VERSION, json=body)
    assert reply.status_code == 400, reply.text
    error = error_of(reply)
    assert error["code"] == "InvalidRequestContent"
    assert fragment in error["message"]


def test_changes_are_audited_with_their_result(arm: ArmEnv) -> None:
    path = arm.group("audited")
    body = {"location": "eastus"}
    assert arm.call("PUT", path, caller=None, api_version=RG_VERSION, json=body).status_code == 401
    assert arm.call("PUT", path, caller="reader", api_version=RG_VERSION, json=body).status_code == 403
    assert arm.call("PUT", path, api_version=RG_VERSION, json=body).status_code == 201
    assert arm.call("DELETE", path, api_version=RG_VERSION).status_code == 200
    entries = arm.audit_entries(f"/subscriptions/{arm.subscription_id}/resourceGroups/audited", 4)
    assert [(e.principal_name, e.action.rsplit("/", 1)[1], e.result, e.detail) for e in entries] == [
        ("anonymous", "write", "Denied:401", ""),
        ("reader", "write", "Denied:403", ""),
        ("owner", "write", "Succeeded:201", "created"),
        ("owner", "delete", "Succeeded:200", "deleted"),
    ]
    assert entries[1].principal_id == arm.callers["reader"].principal_id
