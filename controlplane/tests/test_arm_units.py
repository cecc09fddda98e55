"""Pure logic of the management API: canonical paths, api-versions, paging tokens, property
changes, the machine view, visibility of lists, request bodies."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from arc_controlplane.api.management.access import Visibility, visibility
from arc_controlplane.api.management.odata import Candidate, parse_filter, required_equalities
from arc_controlplane.api.management.schema import MachineBody, MachineUpdate, property_changes
from arc_controlplane.auth.roles import MACHINES_READ, find_role
from arc_controlplane.db.tables import Machine
from arc_controlplane.errors import ArmError
from arc_controlplane.http.caller import Caller
from arc_controlplane.http.paging import decode_skip_token, encode_skip_token, next_link
from arc_controlplane.http.paths import canonical_path
from arc_controlplane.http.versions import HYBRID_COMPUTE, RESOURCES
from arc_controlplane.machines.lifecycle import MachineChanges, apply_changes, changed_properties, merge_patch
from arc_controlplane.machines.view import machine_view
from arc_controlplane.timing import DEFAULT_TIMING

SUB = "0b8f7d4e-1c2a-4b5e-9f00-aa11bb22cc33"
NOW = dt.datetime(2026, 11, 22, 12, 0, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    ("given", "canonical"),
    [
        (
            f"/SUBSCRIPTIONS/{SUB}/RESOURCEGROUPS/My.RG/PROVIDERS/MICROSOFT.HYBRIDCOMPUTE/MACHINES/Web-01",
            f"/subscriptions/{SUB}/resourceGroups/My.RG/providers/Microsoft.HybridCompute/machines/Web-01",
        ),
        (f"/subscriptions/{SUB}/resourcegroups", f"/subscriptions/{SUB}/resourceGroups"),
        (
            f"/Subscriptions/{SUB}/Providers/microsoft.hybridcompute/LOCATIONS/WestEurope/OPERATIONSTATUS/Op",
            f"/subscriptions/{SUB}/providers/Microsoft.HybridCompute/locations/WestEurope/operationStatus/Op",
        ),
        # a machine called "machines" in a group called "providers" keeps its names
        (
            f"/subscriptions/{SUB}/resourceGroups/PROVIDERS/providers/Microsoft.HybridCompute/MACHINES/MACHINES",
            f"/subscriptions/{SUB}/resourceGroups/PROVIDERS/providers/Microsoft.HybridCompute/machines/MACHINES",
        ),
        # nested provider (an extension resource under a machine)
        (
            f"/subscriptions/{SUB}/resourceGroups/g/providers/Microsoft.HybridCompute/machines/m"
            "/PROVIDERS/MICROSOFT.GUESTCONFIGURATION/GUESTCONFIGURATIONASSIGNMENTS/a",
            f"/subscriptions/{SUB}/resourceGroups/g/providers/Microsoft.HybridCompute/machines/m"
            "/providers/Microsoft.GuestConfiguration/guestConfigurationAssignments/a",
        ),
        ("/PROVIDERS/Microsoft.HybridCompute/Operations", "/providers/Microsoft.HybridCompute/Operations"),
        ("/healthz", "/healthz"),
        ("/Subscriptions-x/y", "/Subscriptions-x/y"),
        ("/tenant/oauth2/v2.0/token", "/tenant/oauth2/v2.0/token"),
        (f"/subscriptions/{SUB}/Unknown/Thing", f"/subscriptions/{SUB}/Unknown/Thing"),
        ("/subscriptions", "/subscriptions"),
        ("/", "/"),
        # empty segments are dropped, as Azure does (az resource show -g -n --resource-type; az cloud
        # register with a Resource Manager URL ending in "/")
        (
            f"/subscriptions/{SUB}/resourceGroups/g/providers/Microsoft.HybridCompute//machines/m",
            f"/subscriptions/{SUB}/resourceGroups/g/providers/Microsoft.HybridCompute/machines/m",
        ),
        ("//metadata/endpoints", "/metadata/endpoints"),
        (f"///SUBSCRIPTIONS//{SUB}//", f"/subscriptions/{SUB}/"),
    ],
)
def test_canonical_paths(given: str, canonical: str) -> None:
    assert canonical_path(given) == canonical


def test_api_versions() -> None:
    assert HYBRID_COMPUTE.check("2026-07-15") == "2026-07-15"
    assert RESOURCES.check("2021-04-01") == "2021-04-01"
    with pytest.raises(ArmError) as missing:
        HYBRID_COMPUTE.check(None)
    assert (missing.value.status, missing.value.code) == (400, "MissingApiVersionParameter")
    with pytest.raises(ArmError) as invalid:
        RESOURCES.check("2026-09-01")
    assert invalid.value.code == "InvalidApiVersionParameter"
    assert "'2025-04-01,2025-03-01,2024-11-01,2024-07-01," in invalid.value.message
    with pytest.raises(ArmError) as long:
        HYBRID_COMPUTE.check("x" * 1000)
    assert "x" * 64 + "..." in long.value.message
    assert "x" * 65 not in long.value.message


def test_skip_tokens_round_trip_and_refuse_tampering() -> None:
    assert decode_skip_token(None) is None
    assert decode_skip_token(encode_skip_token(12345)) == 12345
    for bad in ("", "garbage", encode_skip_token(1)[:-2] + "!!", "azE6LTE", "azE6OTk5OTk5OTk5OTk5"):
        with pytest.raises(ArmError) as refused:
            decode_skip_token(bad)
        assert (refused.value.status, refused.value.code) == (400, "InvalidSkipToken")


def test_next_link_keeps_the_query_and_replaces_the_token() -> None:
    link = next_link(
        "https://cp:8443",
        f"/subscriptions/{SUB}/resourceGroups/a b",
        {"api-version": "2024-11-01", "$skiptoken": "old", "$expand": "instanceView"},
        7,
    )
    assert link.startswith(
        f"https://cp:8443/subscriptions/{SUB}/resourceGroups/a%20b?api-version=2024-11-01&"
    )
    assert "$expand=instanceView" in link and f"$skiptoken={encode_skip_token(7)}" in link
    assert "old" not in link


def test_merge_patch_and_property_changes() -> None:
    assert merge_patch({"a": 1, "b": {"c": 2, "d": 3}}, {"a": None, "b": {"c": None, "e": 4}}) == {
        "b": {"d": 3, "e": 4}
    }
    stored = {
        "osProfile": {"computerName": "h1", "linuxConfiguration": {"patchSettings": {"patchMode": "Manual"}}},
        "locationData": {"name": "Paris", "city": "Paris"},
        "agentUpgrade": {"desiredVersion": "1.0"},
    }
    changed = changed_properties(
        stored,
        {
            "osProfile": {"linuxConfiguration": {"patchSettings": {"assessmentMode": "ImageDefault"}}},
            "locationData": {"name": "Lyon"},  # replaced whole
            "agentUpgrade": {"desiredVersion": None},  # merged: emptied, so removed
        },
    )
    assert changed == {
        "osProfile": {
            "computerName": "h1",
            "linuxConfiguration": {
                "patchSettings": {"patchMode": "Manual", "assessmentMode": "ImageDefault"}
            },
        },
        "locationData": {"name": "Lyon"},
    }
    assert stored["agentUpgrade"] == {"desiredVersion": "1.0"}  # inputs are not changed


def machine(**columns: Any) -> Machine:
    values: dict[str, Any] = {
        "resource_id": f"/subscriptions/{SUB}/resourceGroups/G/providers/Microsoft.HybridCompute/machines/M",
        "name": "M",
        "location": "westeurope",
        "tags": {},
        "kind": None,
        "vm_id": "9b1d2c3e-0000-4000-8000-000000000001",
        "tenant_id": "t",
        "principal_id": None,
        "properties": {},
        "provisioning_state": "Succeeded",
        "connected": False,
        "agent_version": None,
        "public_key_pem": None,
        "credential_not_after": None,
        "last_heartbeat": None,
        "status_reason": None,
        "error_details": [],
        "last_status_change": NOW - dt.timedelta(days=1),
        "generation": 0,
    }
    values.update(columns)
    return Machine(**values)


def test_agent_upgrade_changes_bump_the_generation_once() -> None:
    target = machine()
    upgrade = MachineChanges(properties={"agentUpgrade": {"desiredVersion": "1.2.3.4"}})
    assert apply_changes(target, upgrade, NOW) is True
    assert target.generation == 1
    assert apply_changes(target, upgrade, NOW) is False
    # new tags are work too (the agent shows them); the same tags again are not
    assert apply_changes(target, MachineChanges(tags={"a": "b"}), NOW) is True
    assert apply_changes(target, MachineChanges(tags={"a": "b"}), NOW) is False
    assert (target.generation, target.tags) == (2, {"a": "b"})


def test_view_of_a_registered_machine() -> None:
    pem = "-----BEGIN PUBLIC KEY-----\nMIIBIjAN\nBgkqhkiG\n-----END PUBLIC KEY-----\n"
    view = machine_view(
        machine(
            connected=True,
            last_heartbeat=NOW - dt.timedelta(minutes=2),
            principal_id="p",
            public_key_pem=pem,
            properties={"osName": "linux", "storageProfile": {"disks": []}, "secret": "x"},
        ),
        NOW,
        DEFAULT_TIMING,
    )
    assert view["identity"] == {"type": "SystemAssigned", "principalId": "p", "tenantId": "t"}
    properties = view["properties"]
    assert (properties["status"], properties["osName"], properties["osType"]) == ("Connected", "linux", None)
    assert properties["clientPublicKey"] == "MIIBIjANBgkqhkiG"
    assert properties["storageProfile"] == {"disks": []}
    assert "secret" not in properties and "licenseProfile" not in properties
    assert properties["lastStatusChange"] == "2026-11-21T12:00:00Z"


def caller(*assignments: tuple[str, str]) -> Caller:
    return Caller("o", "a", "t", "n", tuple((find_role(role), scope) for role, scope in assignments))


def test_visibility_of_lists() -> None:
    group = f"/subscriptions/{SUB}/resourceGroups/Prod"
    assert visibility(caller(("Reader", f"/subscriptions/{SUB}")), MACHINES_READ, SUB).everything
    seen = visibility(caller(("Reader", group), ("Owner", "/subscriptions/other")), MACHINES_READ, SUB)
    assert seen == Visibility(groups=frozenset({"prod"}))
    assert seen.within_group("PROD").everything
    assert seen.within_group("dev").empty
    single = f"{group}/providers/Microsoft.HybridCompute/machines/M1"
    one = visibility(caller(("Onboarding", single)), MACHINES_READ, SUB)
    assert one.resources == frozenset({("prod", single.lower())})
    assert not one.within_group("prod").empty
    assert visibility(caller(), MACHINES_READ, SUB).empty


def test_bodies_forbid_unknown_members_and_drop_read_only_ones() -> None:
    body = MachineBody.model_validate(
        {
            "location": "North Europe",
            "properties": {"status": "Connected", "osName": "x", "mssqlDiscovered": "true"},
            "identity": {"type": "systemassigned", "principalId": "ignored"},
        }
    )
    assert body.location == "northeurope"
    assert body.identity is not None and body.identity.type == "SystemAssigned"
    assert property_changes(body.properties) == {"mssqlDiscovered": "true"}
    update = MachineUpdate.model_validate(
        {"properties": {"agentUpgrade": None, "cloudMetadata": {"provider": "x"}}}
    )
    assert property_changes(update.properties) == {"agentUpgrade": None}
    with pytest.raises(ValidationError):
        MachineUpdate.model_validate({"properties": {"osType": "linux"}})  # not in MachineUpdateProperties
    with pytest.raises(ValidationError):
        MachineBody.model_validate({"location": "x", "properties": {"enableAutomaticUpgrade": "true"}})


@pytest.mark.parametrize(
    ("odata", "required"),
    [
        (None, []),
        ("", []),
        ("name eq 'web-1'", [("name", "web-1")]),
        (
            "resourceGroup eq 'RG' and resourceType eq 'Microsoft.HybridCompute/machines' "
            "and tagName eq 'name'",
            [("resource_group", "RG"), ("type", "Microsoft.HybridCompute/machines")],
        ),
        ("name eq 'it''s'", [("name", "it's")]),
        ("name eq 'a' or name eq 'b'", []),  # either may match: nothing is required
        ("(name eq 'a')", []),
        ("substringof('name eq', name)", []),
        ("location eq 'westeurope'", []),  # not pushed down (stored spellings vary)
    ],
)
def test_the_equalities_a_filter_requires(odata: str | None, required: list[tuple[str, str]]) -> None:
    parse_filter(odata)  # valid
    assert required_equalities(odata) == required


FILTER_WORDS = [
    *("name", "tagName", "tagValue", "resourceGroup", "location", "resourceType", "plan", "eq", "ne"),
    *("and", "or", "startswith", "substringof", "(", ")", ",", "'x'", "'it''s'", "'", "$", " "),
]


@settings(max_examples=2000, deadline=None)
@given(st.one_of(st.text(max_size=80), st.lists(st.sampled_from(FILTER_WORDS), max_size=12).map(" ".join)))
def test_any_filter_is_either_understood_or_refused_with_azures_code(odata: str) -> None:
    """Whatever a client sends as $filter: a predicate, or 400 InvalidFilterInQueryString."""
    candidate = Candidate("Microsoft.HybridCompute/machines", "web-1", "westeurope", "rg", {"env": "prod"})
    try:
        matches = parse_filter(odata)
    except ArmError as error:
        assert (error.status, error.code) == (400, "InvalidFilterInQueryString")
        return
    assert isinstance(matches(candidate), bool)
    required_equalities(odata)
