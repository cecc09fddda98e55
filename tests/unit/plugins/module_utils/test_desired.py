# Copyright (c) hybridops.arc contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# The collection's "is it as wanted?" decisions (module_utils/_desired.py), one by one. The
# modules' tests and the role filter's tests check that both sides use them the same way.

import pytest
from ansible_collections.hybridops.arc.plugins.module_utils._desired import (
    SettingError,
    connected_as_requested,
    connection_mismatch,
    credential_problems,
    desired_tags,
    is_downgrade,
    settings_differ,
    settings_plan,
    tags_differ,
)

SHOWN = {
    "resourceId": "/subscriptions/s/resourceGroups/arc-servers/providers/Microsoft.HybridCompute/machines/w",
    "resourceName": "web-01",
    "resourceGroup": "arc-servers",
    "subscriptionId": "5D3B1A52-0000-4C1E-9A8E-0D1F2B3C4D5E",
    "tenantId": "0f6c1e1a-2b3c-4d5e-8f9a-0b1c2d3e4f5a",
    "location": "westeurope",
    "status": "Connected",
}


def test_an_option_not_given_accepts_what_the_machine_has():
    assert connection_mismatch(SHOWN, {}) == {}
    assert connection_mismatch(SHOWN, {"resource_name": "", "tenant_id": None}) == {}


def test_identity_compares_without_case_and_locations_without_blanks():
    requested = {
        "resource_name": "WEB-01",
        "resource_group": "Arc-Servers",
        "subscription_id": "5d3b1a52-0000-4c1e-9a8e-0d1f2b3c4d5e",
        "location": "West Europe",
    }
    assert connection_mismatch(SHOWN, requested) == {}


def test_each_difference_is_named_with_both_values():
    assert connection_mismatch(SHOWN, {"resource_group": "other", "resource_name": "web-02"}) == {
        "resource_group": {"current": "arc-servers", "requested": "other"},
        "resource_name": {"current": "web-01", "requested": "web-02"},
    }


def test_connected_as_requested_needs_the_status_and_the_resource():
    assert connected_as_requested(SHOWN, {"resource_group": "arc-servers"})
    assert not connected_as_requested(dict(SHOWN, status="Disconnected"), {})
    assert not connected_as_requested(dict(SHOWN, resourceId=""), {})
    assert not connected_as_requested(SHOWN, {"location": "eastus"})


def test_tags_are_added_or_with_purge_replaced_and_compared_as_strings():
    assert desired_tags({"a": "1", "b": "2"}, {"b": 3}, purge=False) == {"a": "1", "b": "3"}
    assert desired_tags({"a": "1", "b": "2"}, {"b": 3}, purge=True) == {"b": "3"}
    assert not tags_differ({"n": "1"}, {"n": 1}, purge=False)
    assert tags_differ({"n": "1", "m": "2"}, {"n": 1}, purge=True)
    assert not tags_differ({"n": "1", "m": "2"}, {"n": 1}, purge=False)


def test_settings_compare_as_the_agent_stores_them():
    current = {
        "config.mode": "full",
        "extensions.enabled": True,
        "extensions.agent.cpulimit": 5,
        "extensions.allowlist": ["Pub/Type"],
        "incomingconnections.ports": ["22"],
        "proxy.url": "",
    }
    assert settings_plan(current, {"config.mode": "FULL", "extensions.enabled": "true"}) == []
    assert settings_plan(current, {"extensions.agent.cpulimit": "5"}) == []
    assert settings_plan(current, {"extensions.allowlist": {"add": ["pub/type"]}}) == []
    assert settings_plan(current, {"incomingconnections.ports": [22, 80]}) == [
        ("incomingconnections.ports", ["22", "80"], ["22", "80"])
    ]
    assert settings_plan(current, {"extensions.enabled": False}) == [("extensions.enabled", False, False)]
    with pytest.raises(SettingError, match="unknown setting nope"):
        settings_plan(current, {"nope": 1})
    with pytest.raises(SettingError, match="is not a list"):
        settings_plan(current, {"proxy.url": ["a"]})
    # The role's quick question: a setting the module would refuse counts as a difference.
    assert settings_differ(current, {"Config.Mode": "monitor"})
    assert settings_differ(current, {"nope": 1})
    assert not settings_differ(current, {"Config.Mode": "Full"})


@pytest.mark.parametrize(
    "values, required, problems",
    [
        ({}, False, []),
        ({"access_token": "t"}, True, []),
        ({"tenant_id": "t", "service_principal_id": "i", "service_principal_secret": "s"}, True, []),
        ({}, True, ["a credential is needed"]),
        (
            {
                "service_principal_id": "i",
                "tenant_id": "t",
                "service_principal_secret": "s",
                "access_token": "t",
            },
            False,
            ["set only one credential"],
        ),
        ({"service_principal_secret": "s"}, False, ["service_principal_secret needs service_principal_id"]),
        (
            {"service_principal_id": "i", "service_principal_cert": "/c"},
            False,
            ["service_principal_id needs tenant_id"],
        ),
    ],
)
def test_the_credential_rule(values, required, problems):
    found = credential_problems(values, required=required)
    assert [sentence[: len(start)] for sentence, start in zip(found, problems, strict=True)] == problems


def test_a_downgrade_is_an_older_version_than_the_installed_one():
    assert is_downgrade("1.65.3500.100", "1.64.3414.2961")
    assert not is_downgrade("1.64.3414.2961", "1.65.3500.100")
    assert not is_downgrade("1.9.0", "1.10.0")
    assert not is_downgrade("", "1.64.3414.2961")
