# Copyright (c) hybridops.arc contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

import json
import socket

import pytest
from ansible.module_utils.common.warnings import get_warning_messages
from ansible_collections.hybridops.arc.plugins.modules import connection
from ansible_collections.hybridops.arc.tests.unit.plugins.control_plane_standin import (
    ACCESS_TOKEN,
    CLIENT_ID,
    CLIENT_SECRET,
    MACHINE,
    TENANT,
)

SUB = "5d3b1a52-0f6c-4c1e-9a8e-0d1f2b3c4d5e"
VM_ID = "b7a098cc-b0b8-46e8-a205-62f301a62a8f"
NEW_VM_ID = "c0ffee00-b0b8-46e8-a205-62f301a62a8f"
DISCONNECTED = {"resourceId": "", "vmId": "", "status": "Disconnected", "tags": {}, "resourceName": ""}
BASE = dict(
    subscription_id=SUB,
    resource_group="arc-servers",
    location="westeurope",
    resource_name="h1",
    tenant_id=TENANT,
    service_principal_id=CLIENT_ID,
    service_principal_secret=CLIENT_SECRET,
    control_plane_url="https://controlplane:8443",
    control_plane_ca="/root/controlplane-ca.pem",
)
CONNECT = [
    "connect",
    "--subscription-id",
    SUB,
    "--resource-group",
    "arc-servers",
    "--location",
    "westeurope",
    "--cloud",
    "AzureCloud",
    "--resource-name",
    "h1",
    "--tenant-id",
    TENANT,
    "--service-principal-id",
    CLIENT_ID,
    "--control-plane-url",
    "https://controlplane:8443",
    "--control-plane-ca",
    "/root/controlplane-ca.pem",
]
RECONNECT = CONNECT[:11] + ["--reconnect"] + CONNECT[11:]
DISCONNECT = [
    "disconnect",
    "--tenant-id",
    TENANT,
    "--service-principal-id",
    CLIENT_ID,
    "--control-plane-url",
    "https://controlplane:8443",
    "--control-plane-ca",
    "/root/controlplane-ca.pem",
]


def shown(group="arc-servers", name="h1", vm_id=VM_ID, tags=None, url="https://controlplane:8443"):
    resource = "/subscriptions/%s/resourceGroups/%s/providers/Microsoft.HybridCompute/machines/%s" % (
        SUB,
        group,
        name,
    )
    return {
        "resourceName": name,
        "resourceGroup": group,
        "resourceId": resource,
        "subscriptionId": SUB,
        "tenantId": TENANT,
        "vmId": vm_id,
        "location": "westeurope",
        "cloud": "AzureCloud",
        "status": "Connected",
        "tags": dict(tags or {}),
        "controlPlaneUrl": url,
    }


def assert_no_secret(agent, result, secret):
    for call in agent.calls:
        assert all(secret not in arg for arg in call["argv"])
        assert all(secret not in value for value in call["env"].values())
    assert secret not in json.dumps(result)


def test_connects_a_disconnected_machine(agent, run_module):
    agent.expect(["show"], DISCONNECTED).expect(CONNECT, shown())
    out = run_module(connection, BASE, diff=True)
    assert not out.failed
    assert agent.commands() == [["show"], CONNECT]
    connect = agent.calls[1]
    assert connect["env"]["LC_ALL"] == "C"
    assert connect["config"]["mode"] == 0o600
    assert connect["config"]["content"] == {"service-principal-secret": CLIENT_SECRET}
    result = out.result
    assert result["changed"] is True
    assert result["resource_id"] == shown()["resourceId"]
    assert result["vm_id"] == VM_ID
    assert result["status"] == "Connected"
    assert result["machine"] == shown()
    assert result["diff"] == {
        "before": {"connected": False, "resource_id": "", "tags": {}},
        "after": {"connected": True, "resource_id": shown()["resourceId"], "tags": {}},
    }
    assert_no_secret(agent, result, CLIENT_SECRET)


def test_service_principal_secret_never_on_argv(agent, run_module):
    agent.expect(["show"], DISCONNECTED).expect(CONNECT, shown())
    out = run_module(connection, BASE)
    assert_no_secret(agent, out.result, CLIENT_SECRET)
    assert agent.calls[1]["config"]["content"] == {"service-principal-secret": CLIENT_SECRET}


def test_access_token_never_on_argv(agent, run_module):
    args = dict(BASE, access_token=ACCESS_TOKEN)
    for key in ("service_principal_id", "service_principal_secret", "tenant_id"):
        del args[key]
    expected = [a for a in CONNECT if a not in ("--tenant-id", TENANT, "--service-principal-id", CLIENT_ID)]
    agent.expect(["show"], DISCONNECTED).expect(expected, shown())
    out = run_module(connection, args)
    assert out.result["changed"] is True
    assert agent.calls[1]["config"] == dict(
        agent.calls[1]["config"], mode=0o600, content={"access-token": ACCESS_TOKEN}
    )
    assert_no_secret(agent, out.result, ACCESS_TOKEN)


def test_certificate_path_is_a_flag_and_there_is_no_config_file(agent, run_module):
    args = dict(BASE, service_principal_cert="/root/sp.pem")
    del args["service_principal_secret"]
    expected = CONNECT[:15] + ["--service-principal-cert", "/root/sp.pem"] + CONNECT[15:]
    agent.expect(["show"], DISCONNECTED).expect(expected, shown())
    out = run_module(connection, args)
    assert out.result["changed"] is True
    assert agent.calls[1]["config"] is None


def test_connected_to_the_requested_resource_runs_only_show(agent, run_module):
    agent.expect(["show"], shown())
    out = run_module(connection, BASE)
    assert agent.commands() == [["show"]]
    assert out.result["changed"] is False
    assert out.result["vm_id"] == VM_ID


def test_identity_compares_without_regard_to_case_and_default_name_is_the_host_name(agent, run_module):
    host = socket.gethostname().split(".", 1)[0]
    args = dict(BASE, resource_group="ARC-SERVERS", location="West Europe")
    del args["resource_name"]
    agent.expect(["show"], shown(name=host))
    out = run_module(connection, args)
    assert out.result["changed"] is False
    assert agent.commands() == [["show"]]


def test_check_mode_predicts_a_connect_without_running_it(agent, run_module):
    agent.expect(["show"], DISCONNECTED)
    out = run_module(connection, dict(BASE, tags={"env": "test"}), check_mode=True, diff=True)
    assert agent.commands() == [["show"]]
    assert out.result["changed"] is True
    assert out.result["resource_id"] == shown()["resourceId"]
    assert out.result["vm_id"] == ""
    assert out.result["diff"]["after"] == {
        "connected": True,
        "resource_id": shown()["resourceId"],
        "tags": {"env": "test"},
    }


def test_tags_are_quoted_and_escaped_for_connect():
    tags = {"env": "prod", "Cost Center": "IT, Ops", "quote": "it's \\ here"}
    assert connection.encode_tags(tags) == "'Cost Center'='IT, Ops','env'='prod','quote'='it\\'s \\\\ here'"


def test_mismatch_fails_naming_what_differs_and_changes_nothing(agent, run_module):
    agent.expect(["show"], shown(group="other-group"))
    out = run_module(connection, BASE)
    assert out.failed
    assert agent.commands() == [["show"]]
    assert "resource group is 'other-group', requested 'arc-servers'" in out.result["msg"]
    assert "on_mismatch=reconnect" in out.result["msg"]
    assert out.result["mismatch"] == {
        "resource_group": {"current": "other-group", "requested": "arc-servers"}
    }


@pytest.mark.parametrize(
    "field, current, option, value",
    [
        ("resourceName", "h9", "resource_name", "h1"),
        ("subscriptionId", "00000000-0000-0000-0000-000000000000", "subscription_id", SUB),
        ("tenantId", "11111111-0000-0000-0000-000000000000", "tenant_id", TENANT),
        ("location", "northeurope", "location", "westeurope"),
    ],
)
def test_each_identity_field_is_compared(agent, run_module, field, current, option, value):
    machine = dict(shown(), **{field: current})
    agent.expect(["show"], machine)
    out = run_module(connection, BASE)
    assert out.failed
    assert out.result["mismatch"] == {option: {"current": current, "requested": value}}
    assert agent.commands() == [["show"]]


def test_on_mismatch_reconnect_replaces_the_connection_in_one_step(agent, run_module):
    """The agent keeps the connection in place until the new one is made (``--reconnect``), then
    deletes the old resource: no disconnect first, which would leave the machine disconnected
    when the connect then fails."""
    agent.expect(["show"], shown(group="other-group"))
    note = "the previous resource /subscriptions/x was deleted"
    agent.expect(RECONNECT, dict(shown(vm_id=NEW_VM_ID), previousResource={"resourceId": "x", "note": note}))
    out = run_module(connection, dict(BASE, on_mismatch="reconnect"))
    assert agent.commands() == [["show"], RECONNECT]
    assert agent.calls[1]["config"]["content"] == {"service-principal-secret": CLIENT_SECRET}
    assert out.result["changed"] is True
    assert out.result["vm_id"] == NEW_VM_ID
    assert note not in get_warning_messages()


def test_a_reconnect_that_cannot_delete_the_old_resource_warns(agent, run_module):
    agent.expect(["show"], shown(group="other-group"))
    note = (
        "the previous resource /subscriptions/x could not be deleted (AZCM0041: refused); delete it yourself"
    )
    agent.expect(RECONNECT, dict(shown(vm_id=NEW_VM_ID), previousResource={"resourceId": "x", "note": note}))
    out = run_module(connection, dict(BASE, on_mismatch="reconnect"))
    assert out.result["changed"] is True
    assert note in get_warning_messages()


def test_on_mismatch_reconnect_in_check_mode_runs_only_show(agent, run_module):
    agent.expect(["show"], shown(group="other-group"))
    out = run_module(connection, dict(BASE, on_mismatch="reconnect"), check_mode=True)
    assert agent.commands() == [["show"]]
    assert out.result["changed"] is True
    assert out.result["resource_id"] == shown()["resourceId"]


def test_force_reconnect_replaces_the_identity_in_one_step(agent, run_module):
    agent.expect(["show"], shown()).expect(RECONNECT, shown())
    out = run_module(connection, dict(BASE, force_reconnect=True))
    assert agent.commands() == [["show"], RECONNECT]
    assert out.result["changed"] is True
    assert out.result["vm_id"] == VM_ID


def test_force_reconnect_in_check_mode_runs_only_show(agent, run_module):
    agent.expect(["show"], shown())
    out = run_module(connection, dict(BASE, force_reconnect=True), check_mode=True)
    assert agent.commands() == [["show"]]
    assert out.result["changed"] is True
    assert out.result["vm_id"] == VM_ID


def test_disconnect_with_credentials(agent, run_module):
    agent.expect(["show"], shown()).expect(DISCONNECT, {"status": "Disconnected"}).expect(
        ["show"], DISCONNECTED
    )
    out = run_module(connection, dict(BASE, state="disconnected"), diff=True)
    assert agent.commands() == [["show"], DISCONNECT, ["show"]]
    assert agent.calls[1]["config"]["mode"] == 0o600
    assert out.result["changed"] is True
    assert out.result["resource_id"] == ""
    assert out.result["diff"]["before"]["connected"] is True
    assert out.result["diff"]["after"]["connected"] is False
    assert_no_secret(agent, out.result, CLIENT_SECRET)


def test_disconnect_check_mode_and_already_disconnected(agent, run_module):
    agent.expect(["show"], shown())
    out = run_module(connection, dict(BASE, state="disconnected"), check_mode=True)
    assert out.result["changed"] is True
    assert out.result["resource_id"] == ""
    agent.expect(["show"], DISCONNECTED)
    out = run_module(connection, dict(BASE, state="disconnected"))
    assert out.result["changed"] is False
    assert agent.commands() == [["show"], ["show"]]


def test_force_local_only_needs_no_credentials(agent, run_module):
    agent.expect(["show"], shown()).expect(["disconnect", "--force-local-only"], {"status": "Disconnected"})
    agent.expect(["show"], DISCONNECTED)
    out = run_module(connection, dict(state="disconnected", force_local_only=True))
    assert out.result["changed"] is True
    assert agent.commands() == [["show"], ["disconnect", "--force-local-only"], ["show"]]


def test_agent_error_fails_with_its_code(agent, run_module):
    agent.expect(["show"], DISCONNECTED).fail(CONNECT, "AZCM0041", "the service principal was refused")
    out = run_module(connection, BASE)
    assert out.failed
    assert out.result["code"] == "AZCM0041"
    assert out.result["changed"] is False
    assert out.result["msg"] == (
        "azcmagent connect failed for resource h1 in resource group arc-servers: "
        "AZCM0041: the service principal was refused"
    )
    assert_no_secret(agent, out.result, CLIENT_SECRET)


def test_a_failed_reconnect_changes_nothing(agent, run_module):
    agent.expect(["show"], shown())
    agent.fail(RECONNECT, "AZCM0026", "cannot reach the control plane")
    out = run_module(connection, dict(BASE, force_reconnect=True))
    assert out.failed
    assert out.result["code"] == "AZCM0026"
    assert out.result["changed"] is False
    assert agent.commands() == [["show"], RECONNECT]


@pytest.mark.parametrize(
    "args, message",
    [
        (dict(BASE, access_token=ACCESS_TOKEN), "mutually exclusive"),
        (dict(BASE, resource_group=None), "resource_group"),
        (
            dict((k, v) for k, v in BASE.items() if k != "service_principal_secret"),
            "service_principal_secret",
        ),
        (dict((k, v) for k, v in BASE.items() if k != "tenant_id"), "tenant_id"),
    ],
)
def test_relations_are_declared(agent, run_module, args, message):
    args = dict((k, v) for k, v in args.items() if v is not None)
    out = run_module(connection, args)
    assert out.failed
    assert message in out.result["msg"]
    assert agent.calls == []


# Tags go through the management API: the real HTTPS stand-in of tests/unit/plugins/conftest.py.


def test_tags_differ_patch_without_reconnect(agent, run_module, control_plane):
    control_plane.add_machine(MACHINE, tags={"env": "test", "keep": "me"})
    agent.expect(["show"], shown(url=control_plane.url))
    args = dict(
        BASE, control_plane_url=control_plane.url, control_plane_ca=control_plane.ca, tags={"env": "prod"}
    )
    out = run_module(connection, args, diff=True)
    assert agent.commands() == [["show"]], "tags never reconnect"
    assert out.result["changed"] is True
    assert out.result["tags"] == {"env": "prod", "keep": "me"}
    assert [r["method"] for r in control_plane.requests] == ["POST", "GET", "PATCH"]
    assert json.loads(control_plane.requests[2]["body"]) == {"tags": {"env": "prod", "keep": "me"}}
    assert out.result["diff"]["before"]["tags"] == {"env": "test", "keep": "me"}
    assert out.result["diff"]["after"]["tags"] == {"env": "prod", "keep": "me"}
    assert_no_secret(agent, out.result, CLIENT_SECRET)


def test_purge_tags_removes_unlisted_ones(agent, run_module, control_plane):
    control_plane.add_machine(MACHINE, tags={"env": "prod", "old": "x"})
    agent.expect(["show"], shown(url=control_plane.url))
    args = dict(
        BASE,
        control_plane_url=control_plane.url,
        control_plane_ca=control_plane.ca,
        tags={"env": "prod"},
        purge_tags=True,
    )
    out = run_module(connection, args)
    assert out.result["changed"] is True
    assert control_plane.machines[MACHINE.lower()]["tags"] == {"env": "prod"}


def test_same_tags_change_nothing(agent, run_module, control_plane):
    control_plane.add_machine(MACHINE, tags={"env": "prod", "other": "y"})
    agent.expect(["show"], shown(url=control_plane.url))
    args = dict(
        BASE, control_plane_url=control_plane.url, control_plane_ca=control_plane.ca, tags={"env": "prod"}
    )
    out = run_module(connection, args)
    assert out.result["changed"] is False
    assert [r["method"] for r in control_plane.requests] == ["POST", "GET"]


def test_tags_in_check_mode_read_but_never_patch(agent, run_module, control_plane):
    control_plane.add_machine(MACHINE, tags={"env": "test"})
    agent.expect(["show"], shown(url=control_plane.url))
    args = dict(
        BASE, control_plane_url=control_plane.url, control_plane_ca=control_plane.ca, tags={"env": "prod"}
    )
    out = run_module(connection, args, check_mode=True)
    assert out.result["changed"] is True
    assert out.result["tags"] == {"env": "prod"}
    assert [r["method"] for r in control_plane.requests] == ["POST", "GET"]
    assert control_plane.machines[MACHINE.lower()]["tags"] == {"env": "test"}


def test_tags_with_access_token_use_it_as_bearer(agent, run_module, control_plane):
    control_plane.add_machine(MACHINE, tags={})
    agent.expect(["show"], shown(url=control_plane.url))
    args = dict(BASE, control_plane_url=control_plane.url, control_plane_ca=control_plane.ca, tags={"a": "1"})
    for key in ("service_principal_id", "service_principal_secret"):
        del args[key]
    args["access_token"] = ACCESS_TOKEN
    out = run_module(connection, args)
    assert out.result["changed"] is True
    assert [r["method"] for r in control_plane.requests] == ["GET", "PATCH"]
    assert_no_secret(agent, out.result, ACCESS_TOKEN)


def test_tags_on_connect_are_read_back_from_the_resource(agent, run_module, control_plane):
    args = dict(
        BASE, control_plane_url=control_plane.url, control_plane_ca=control_plane.ca, tags={"env": "prod"}
    )
    expected = list(CONNECT)
    expected[expected.index("https://controlplane:8443")] = control_plane.url
    expected[expected.index("/root/controlplane-ca.pem")] = control_plane.ca
    expected = expected[:11] + ["--tags", "'env'='prod'"] + expected[11:]
    control_plane.add_machine(MACHINE, tags={"env": "prod"})  # what the connect made
    agent.expect(["show"], DISCONNECTED).expect(expected, shown(tags={"env": "prod"}, url=control_plane.url))
    out = run_module(connection, args)
    assert out.result["changed"] is True
    assert out.result["tags"] == {"env": "prod"}
    assert [r["method"] for r in control_plane.requests] == ["POST", "GET"]


def test_tags_with_a_certificate_fail_before_any_change(agent, run_module):
    args = dict(BASE, service_principal_cert="/root/sp.pem", tags={"env": "prod"})
    del args["service_principal_secret"]
    agent.expect(["show"], DISCONNECTED)
    out = run_module(connection, args)
    assert out.failed
    assert agent.commands() == [["show"]]
    assert "service_principal_secret or access_token" in out.result["msg"]


def test_refused_management_api_call_fails_with_its_code(agent, run_module, control_plane):
    control_plane.add_machine(MACHINE, tags={})
    agent.expect(["show"], shown(url=control_plane.url))
    args = dict(
        BASE,
        control_plane_url=control_plane.url,
        control_plane_ca=control_plane.ca,
        tags={"a": "1"},
        service_principal_secret="wrong",
    )
    out = run_module(connection, args)
    assert out.failed
    assert out.result["code"] == "invalid_client"
    assert out.result["msg"].startswith("management API get a token failed for resource h1")
    assert "wrong" not in out.result["msg"]


def test_a_concurrent_run_that_connected_first_leaves_nothing_to_do(agent, run_module):
    """Two jobs on one host: both saw it disconnected; the second's connect finds it connected
    (AZCM0067) to the requested resource, which is success without a change."""
    agent.expect(["show"], DISCONNECTED).fail(CONNECT, "AZCM0067", "this machine was connected meanwhile")
    agent.expect(["show"], shown())
    out = run_module(connection, BASE)
    assert not out.failed
    assert out.result["changed"] is False
    assert out.result["resource_id"] == shown()["resourceId"]


def test_a_concurrent_connect_to_another_resource_still_fails(agent, run_module):
    agent.expect(["show"], DISCONNECTED).fail(CONNECT, "AZCM0067", "this machine was connected meanwhile")
    agent.expect(["show"], shown(group="other-group"))
    out = run_module(connection, BASE)
    assert out.failed
    assert out.result["code"] == "AZCM0067"


GATEWAY = "/subscriptions/%s/resourceGroups/arc-servers/providers/Microsoft.HybridCompute/gateways/gw-1" % SUB
THROUGH_GATEWAY = CONNECT[:11] + ["--gateway-id", GATEWAY] + CONNECT[11:]
RECONNECT_THROUGH_GATEWAY = CONNECT[:11] + ["--gateway-id", GATEWAY, "--reconnect"] + CONNECT[11:]
IN_GATEWAY_MODE = dict(shown(), httpsProxy="http://localhost:40343", gatewayUrl="https://controlplane:8444")


def test_connects_through_a_gateway(agent, run_module):
    agent.expect(["show"], DISCONNECTED).expect(THROUGH_GATEWAY, IN_GATEWAY_MODE)
    out = run_module(connection, dict(BASE, gateway_id=GATEWAY))
    assert agent.commands() == [["show"], THROUGH_GATEWAY]
    assert out.result["changed"] is True and out.result["machine"]["gatewayUrl"]


def test_a_machine_not_in_gateway_mode_is_reconnected_through_the_gateway(agent, run_module):
    agent.expect(["show"], shown()).expect(RECONNECT_THROUGH_GATEWAY, IN_GATEWAY_MODE)
    out = run_module(connection, dict(BASE, gateway_id=GATEWAY))
    assert agent.commands() == [["show"], RECONNECT_THROUGH_GATEWAY]
    assert out.result["changed"] is True


def test_a_machine_in_gateway_mode_is_left_alone(agent, run_module):
    agent.expect(["show"], IN_GATEWAY_MODE)
    out = run_module(connection, dict(BASE, gateway_id=GATEWAY))
    assert agent.commands() == [["show"]]
    assert out.result["changed"] is False
