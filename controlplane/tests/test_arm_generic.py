"""The routes generic Azure clients need before and around the typed ones (docs/azure-tools.md):
cloud metadata, subscriptions and tenants, providers, generic resource lists with ``$filter``,
resource group PATCH and empty path segments; against a running server over HTTPS, on SQLite and
PostgreSQL."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator

import pytest
from armenv import HC, RG_VERSION, ArmEnv, arm_environment, error_of

from arc_controlplane.auth.principals import ensure_subscription, ensure_tenant

TYPE = "Microsoft.HybridCompute/machines"


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def arm(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ArmEnv]:
    with arm_environment(request, tmp_path_factory) as env:
        env.add_group("web")
        env.add_group("db", location="northeurope")
        env.add_machines("web", ["web-1", "web-2"], tags={"tier": "front", "Env": "prod"})
        env.add_machines("web", ["web-3"], tags={"tier": "front", "env": "test"})
        env.add_machines("db", ["db-1"], tags={"tier": "back"}, location="northeurope")
        env.add_principal("web-reader", "Reader", env.group("web"))
        yield env


def test_cloud_metadata_answers_without_a_token_in_each_shape(arm: ArmEnv) -> None:
    root = arm.server.url("/")
    new = arm.call("GET", "/metadata/endpoints", caller=None, api_version="2022-09-01")
    assert new.status_code == 200, new.text
    cloud = new.json()
    assert cloud["resourceManager"] == root
    assert cloud["authentication"]["loginEndpoint"] == root
    assert cloud["authentication"]["audiences"] == [root]
    assert cloud["suffixes"] == {}
    assert cloud["name"]
    for version in ("2019-05-01", "2020-06-01"):
        listed = arm.call("GET", "/metadata/endpoints", caller=None, api_version=version)
        assert listed.json() == [cloud], version
    # a Resource Manager URL that ends in "/" gives "//metadata/endpoints" (az cloud register)
    legacy = arm.call("GET", arm.server.url("//metadata/endpoints"), caller=None, api_version="2015-01-01")
    assert legacy.status_code == 200
    # msrestazure (ADAL) signs in there at the AD FS authority, the only one it takes unchecked
    assert legacy.json() == {
        "graphEndpoint": root,
        "authentication": {"loginEndpoint": f"{root}adfs/", "audiences": [root]},
    }
    unknown = arm.call("GET", "/metadata/endpoints", caller=None, api_version="2030-01-01")
    assert unknown.status_code == 400
    assert error_of(unknown)["code"] == "InvalidApiVersionParameter"


def test_a_caller_sees_the_subscriptions_where_it_has_a_role(arm: ArmEnv) -> None:
    listed = arm.call("GET", "/subscriptions", api_version="2022-12-01")
    assert listed.status_code == 200, listed.text
    (subscription,) = listed.json()["value"]
    assert subscription["subscriptionId"] == arm.subscription_id
    assert subscription["id"] == arm.sub
    assert subscription["tenantId"] == arm.tenant_id
    assert subscription["state"] == "Enabled"
    assert subscription["displayName"] == "Tests"
    # a role on one group is enough to see the subscription, as in Azure
    by_group = arm.call("GET", "/subscriptions", caller="web-reader", api_version="2022-12-01")
    assert [s["subscriptionId"] for s in by_group.json()["value"]] == [arm.subscription_id]
    assert arm.call("GET", arm.sub, caller="web-reader", api_version="2022-12-01").status_code == 200
    # no role: none listed, and the subscription itself is refused
    assert arm.call("GET", "/subscriptions", caller="nobody", api_version="2016-06-01").json() == {
        "value": []
    }
    refused = arm.call("GET", arm.sub, caller="nobody", api_version="2022-12-01")
    assert refused.status_code == 403
    assert error_of(refused)["code"] == "AuthorizationFailed"
    missing = arm.call("GET", f"/subscriptions/{uuid.uuid4()}", api_version="2022-12-01")
    assert error_of(missing)["code"] == "SubscriptionNotFound"
    tenants = arm.call("GET", "/tenants", api_version="2022-12-01").json()["value"]
    assert [t["tenantId"] for t in tenants] == [arm.tenant_id]
    assert arm.call("GET", "/subscriptions", caller=None, api_version="2022-12-01").status_code == 401


def test_other_tenants_subscriptions_are_not_listed(arm: ArmEnv) -> None:
    other_tenant = str(uuid.uuid4())
    now = dt.datetime.now(dt.UTC)
    with arm.db.session() as session:
        ensure_tenant(session, other_tenant, "Other", now)
        ensure_subscription(session, str(uuid.uuid4()), other_tenant, "Other", now)
    listed = arm.call("GET", "/subscriptions", api_version="2022-12-01").json()["value"]
    assert [s["subscriptionId"] for s in listed] == [arm.subscription_id]


def test_providers_list_the_types_and_versions_the_routes_accept(arm: ArmEnv) -> None:
    reply = arm.call("GET", f"{arm.sub}/providers/microsoft.hybridcompute", api_version="2021-04-01")
    assert reply.status_code == 200, reply.text
    provider = reply.json()
    assert provider["namespace"] == "Microsoft.HybridCompute"
    assert provider["registrationState"] == "Registered"
    machines = next(t for t in provider["resourceTypes"] if t["resourceType"] == "machines")
    assert machines["locations"] == ["northeurope", "westeurope"]
    # what `az resource show --ids` does: the first stable version, then GET with it
    stable = next(v for v in machines["apiVersions"] if "preview" not in v)
    assert machines["apiVersions"] == sorted(machines["apiVersions"], reverse=True)
    got = arm.call("GET", arm.machine("web", "web-1"), api_version=stable)
    assert got.status_code == 200, got.text
    for version in machines["apiVersions"]:  # every listed version is accepted
        assert arm.call("GET", arm.machine("web", "web-1"), api_version=version).status_code == 200, version

    listed = arm.call("GET", f"{arm.sub}/providers", api_version="2024-11-01").json()["value"]
    assert {p["namespace"] for p in listed} == {
        "Microsoft.GuestConfiguration", "Microsoft.HybridCompute", "Microsoft.Resources"
    }  # fmt: skip
    (guest,) = [p for p in listed if p["namespace"] == "Microsoft.GuestConfiguration"]
    assignments = next(
        t for t in guest["resourceTypes"] if t["resourceType"] == "guestConfigurationAssignments"
    )
    assert assignments["apiVersions"][0] == "2024-04-05"
    tenant_level = arm.call("GET", "/providers/Microsoft.HybridCompute", api_version="2015-01-01")
    assert tenant_level.status_code == 200
    assert tenant_level.json()["id"] == "/providers/Microsoft.HybridCompute"
    registered = arm.call(
        "POST", f"{arm.sub}/providers/Microsoft.HybridCompute/register", api_version="2021-04-01"
    )
    assert registered.json()["registrationState"] == "Registered"
    assert (
        arm.call("GET", f"{arm.sub}/providers", caller="web-reader", api_version="2024-11-01").status_code
        == 200
    )


def test_unknown_providers_and_strangers_are_refused(arm: ArmEnv) -> None:
    unknown = arm.call("GET", f"{arm.sub}/providers/Microsoft.Compute", api_version="2021-04-01")
    assert unknown.status_code == 404
    assert error_of(unknown)["code"] == "InvalidResourceNamespace"
    assert error_of(arm.call("GET", "/providers/Nope", api_version="2021-04-01"))["code"] == (
        "InvalidResourceNamespace"
    )
    stranger = arm.call("GET", f"{arm.sub}/providers", caller="nobody", api_version="2021-04-01")
    assert stranger.status_code == 403
    bad_version = arm.call("GET", f"{arm.sub}/providers", api_version="2015-13-45")
    assert error_of(bad_version)["code"] == "InvalidApiVersionParameter"


def _names(arm: ArmEnv, path: str, caller: str = "owner", **params: str) -> list[str]:
    reply = arm.call("GET", path, caller=caller, api_version=RG_VERSION, params=params)
    assert reply.status_code == 200, reply.text
    return sorted(resource["name"] for resource in reply.json()["value"])


@pytest.mark.parametrize(
    ("odata", "names"),
    [
        ("", ["db-1", "web-1", "web-2", "web-3"]),
        (f"resourceType eq '{TYPE.lower()}'", ["db-1", "web-1", "web-2", "web-3"]),
        ("resourceType eq 'Microsoft.Compute/virtualMachines'", []),
        ("resourceGroup eq 'WEB'", ["web-1", "web-2", "web-3"]),
        ("name eq 'web-2'", ["web-2"]),
        ("location eq 'North Europe'", ["db-1"]),
        ("tagname eq 'env'", ["web-1", "web-2", "web-3"]),  # tag names without case
        ("tagName eq 'env' and tagValue eq 'prod'", ["web-1", "web-2"]),
        ("tagName eq 'env' and tagValue eq 'PROD'", []),  # values with case
        ("startswith(tagname, 'ti')", ["db-1", "web-1", "web-2", "web-3"]),
        ("substringof('eb-', name) and resourceGroup eq 'web'", ["web-1", "web-2", "web-3"]),
        ("name eq 'db-1' or (name eq 'web-3' and location eq 'westeurope')", ["db-1", "web-3"]),
        ("resourceGroup eq 'web' and name eq 'it''s'", []),
    ],
)
def test_resources_are_filtered_as_azure_filters_them(arm: ArmEnv, odata: str, names: list[str]) -> None:
    assert _names(arm, f"{arm.sub}/resources", **{"$filter": odata}) == names


@pytest.mark.parametrize(
    "odata",
    [
        "resourceType eq",
        "plan eq 'x'",
        "name ne 'x'",
        "tagValue eq 'prod'",
        "name eq 'x' and",
        "(name eq 'x'",
        "name eq 'unterminated",
        "startswith(location, 'w')",
        "name eq 'x' $ 1",
    ],
)
def test_filters_that_cannot_be_evaluated_are_refused(arm: ArmEnv, odata: str) -> None:
    reply = arm.call("GET", f"{arm.sub}/resources", api_version=RG_VERSION, params={"$filter": odata})
    assert reply.status_code == 400, reply.text
    error = error_of(reply)
    assert error["code"] == "InvalidFilterInQueryString"
    assert "resourceType, name, location" in error["message"]  # says what is possible


@pytest.mark.parametrize(
    ("method", "path", "status", "code"),
    [
        (
            "GET",
            "/resourceGroups/web/providers/Microsoft.Compute/virtualMachines/vm1",
            400,
            "InvalidResourceNamespace",
        ),
        ("PUT", "/providers/Microsoft.Nope/things/x", 400, "InvalidResourceNamespace"),
        (
            "GET",
            "/resourceGroups/web/providers/Microsoft.HybridCompute/widgets/x",
            400,
            "InvalidResourceType",
        ),
        (
            "GET",
            "/resourceGroups/web/providers/Microsoft.HybridCompute/machines/web-1/gadgets/y",
            400,
            "InvalidResourceType",
        ),
        (
            "POST",
            "/resourceGroups/web/providers/Microsoft.HybridCompute/machines/web-1",
            405,
            "MethodNotAllowed",
        ),
        ("PUT", "/providers/Microsoft.HybridCompute/machines", 405, "MethodNotAllowed"),
    ],
)
def test_resources_no_route_serves_get_azures_codes(
    arm: ArmEnv, method: str, path: str, status: int, code: str
) -> None:
    reply = arm.call(method, arm.sub + path, api_version=HC, json={} if method in ("PUT", "POST") else None)
    assert (reply.status_code, error_of(reply)["code"]) == (status, code), reply.text
    anonymous = arm.call(method, arm.sub + path, caller=None, api_version=HC)
    assert anonymous.status_code == 401  # nothing is said to a caller without a token


def test_generic_lists_page_expand_and_see_what_the_caller_may_read(arm: ArmEnv) -> None:
    first = arm.call("GET", f"{arm.sub}/resources", api_version=RG_VERSION, params={"$top": "3"}).json()
    assert len(first["value"]) == 3
    with arm.client() as client:
        owner = {"Authorization": f"Bearer {arm.callers['owner'].token}"}
        second = client.get(first["nextLink"], headers=owner).json()
    assert sorted(r["name"] for r in first["value"] + second["value"]) == ["db-1", "web-1", "web-2", "web-3"]
    assert "nextLink" not in second

    expanded = arm.call(
        "GET",
        f"{arm.group('db')}/resources",
        api_version=RG_VERSION,
        params={"$expand": "createdTime,changedTime,provisioningState"},
    ).json()["value"]
    (db,) = expanded
    assert {"createdTime", "changedTime"} <= set(db)
    assert db["provisioningState"] == "Succeeded"
    assert db["type"] == TYPE
    assert db["tags"] == {"tier": "back"}
    plain = arm.call("GET", f"{arm.group('db')}/resources", api_version=RG_VERSION).json()["value"]
    assert "createdTime" not in plain[0]

    assert _names(arm, f"{arm.sub}/resources", caller="web-reader") == ["web-1", "web-2", "web-3"]
    assert _names(arm, f"{arm.group('web')}/resources", caller="web-reader") == ["web-1", "web-2", "web-3"]
    refused = arm.call("GET", f"{arm.group('db')}/resources", caller="web-reader", api_version=RG_VERSION)
    assert refused.status_code == 403
    missing = arm.call("GET", f"{arm.group('nope')}/resources", api_version=RG_VERSION)
    assert error_of(missing)["code"] == "ResourceGroupNotFound"
    for name, value, code in (
        ("$expand", "everything", "InvalidExpandQueryString"),
        ("$top", "0", "InvalidTopInQueryString"),
        ("$top", "x", "InvalidTopInQueryString"),
    ):
        reply = arm.call("GET", f"{arm.sub}/resources", api_version=RG_VERSION, params={name: value})
        assert (reply.status_code, error_of(reply)["code"]) == (400, code)


def test_a_group_patch_replaces_its_tags_only(arm: ArmEnv) -> None:
    arm.add_group("patched")
    path = arm.group("patched")
    reply = arm.call("PATCH", path, api_version="2024-11-01", json={"tags": {"team": "ops"}})
    assert reply.status_code == 200, reply.text
    assert reply.json()["tags"] == {"team": "ops"}
    assert reply.json()["location"] == "westeurope"
    unchanged = arm.call("PATCH", path, api_version="2024-11-01", json={"managedBy": None})
    assert unchanged.json()["tags"] == {"team": "ops"}
    refused = arm.call("PATCH", path, caller="reader", api_version="2024-11-01", json={"tags": {}})
    assert refused.status_code == 403
    bad = arm.call("PATCH", path, api_version="2024-11-01", json={"tags": {"a": 1}})
    assert bad.status_code == 400
    managed = arm.call("PATCH", path, api_version="2024-11-01", json={"managedBy": "/subscriptions/x"})
    assert managed.status_code == 400 and "managedBy" in error_of(managed)["message"]


def test_empty_path_segments_are_ignored_as_azure_ignores_them(arm: ArmEnv) -> None:
    path = f"{arm.group('web')}/providers/Microsoft.HybridCompute//machines/web-1"
    reply = arm.call("GET", path, api_version=HC)
    assert reply.status_code == 200, reply.text
    assert reply.json()["name"] == "web-1"
