# Copyright (c) hybridops.arc contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# The arc_agent role decides on the controller (the arc_agent_plan filter) whether the connection
# and config steps must run; the modules decide on the host. Both use module_utils/_desired.py:
# these tests put the same host state in front of both and check that they agree, case by case.

import pytest
from ansible_collections.hybridops.arc.plugins.filter.arc_agent import (
    arc_agent_plan,
    arc_agent_problems,
    credential_problems_filter,
)
from ansible_collections.hybridops.arc.plugins.modules import agent_config, connection
from ansible_collections.hybridops.arc.tests.unit.plugins.modules.test_agent_config import DEFAULTS, listing
from ansible_collections.hybridops.arc.tests.unit.plugins.modules.test_connection import BASE, TENANT, shown

CA_DEST = "/var/opt/azcmagent/controlplane-ca.pem"
VERSION = "1.64.3414.2961"


def wanted(**changes):
    """The role's variables (without the arc_agent_ prefix), as vars/main.yml hands them over."""
    values = dict(
        state="present",
        version=VERSION,
        connection_state="connected",
        package_dir="/build/wheelhouse",
        package_source="controller",
        package_url="",
        package_cache="~/.cache",
        control_plane_url="",
        control_plane_ca="",
        tenant_id=BASE["tenant_id"],
        subscription_id=BASE["subscription_id"],
        resource_group=BASE["resource_group"],
        location=BASE["location"],
        resource_name=BASE["resource_name"],
        tags={},
        purge_tags=False,
        config={},
        service_principal_id=BASE["service_principal_id"],
        service_principal_secret=BASE["service_principal_secret"],
        access_token="",
    )
    values.update(changes)
    return values


def probe(show, config=None):
    return {
        "arc_agent": {
            "installed": True,
            "connected": bool(show.get("resourceId")),
            "version": VERSION,
            "show": show,
            "config": dict(DEFAULTS, **(config or {})),
            "services": {"agentService": "running", "extensionService": "running", "gcService": "running"},
        }
    }


def module_args(role, plan):
    """The connection module's options as tasks/connection.yml passes them (tags aside)."""
    args = dict((k, v) for k, v in plan["connection"].items() if v is not None and k != "tags")
    for option in ("service_principal_id", "service_principal_secret", "access_token"):
        if role[option]:
            args[option] = role[option]
    return args


# (what the host is connected to, the role's identity variables that differ from BASE)
CONNECTION_CASES = [
    pytest.param(shown(), {}, id="the-requested-resource"),
    pytest.param(shown(name="other-name"), {"resource_name": ""}, id="name-omitted-accepts-any-name"),
    pytest.param(shown(name="other-name"), {}, id="another-name"),
    pytest.param(shown(), {"resource_group": "ARC-SERVERS", "location": "West Europe"}, id="case-and-blanks"),
    pytest.param(shown(), {"tenant_id": ""}, id="tenant-omitted"),
    pytest.param(shown(), {"tenant_id": "0f6c1e1a-0000-4d5e-8f9a-0b1c2d3e4f5a"}, id="another-tenant"),
    pytest.param(shown(group="arc-other"), {}, id="another-group"),
    pytest.param(shown(), {"location": "eastus"}, id="another-location"),
]


@pytest.mark.parametrize("current, changes", CONNECTION_CASES)
def test_role_and_connection_module_agree_on_the_connected_resource(agent, run_module, current, changes):
    role = wanted(**changes)
    if not role["tenant_id"]:  # a service principal needs the tenant: use a token instead
        role.update(service_principal_id="", service_principal_secret="", access_token="token")
    plan = arc_agent_plan(probe(current), role, CA_DEST)
    role_acts = "connection" in plan["steps"]

    agent.expect(["show"], current)
    out = run_module(connection, module_args(role, plan), check_mode=True)
    module_acts = out.failed or out.result["changed"]
    assert role_acts == module_acts, out.result
    assert out.failed == bool(out.result.get("mismatch")), out.result


@pytest.mark.parametrize(
    "config, settings",
    [
        pytest.param({}, {"incomingconnections.ports": ["22"]}, id="a-list-to-set"),
        pytest.param(
            {"incomingconnections.ports": ["22"]}, {"IncomingConnections.Ports": [22]}, id="same-list"
        ),
        pytest.param({"config.mode": "full"}, {"config.mode": "FULL"}, id="enum-case"),
        pytest.param({"extensions.enabled": True}, {"extensions.enabled": "True"}, id="boolean-as-text"),
        pytest.param(
            {"extensions.agent.cpulimit": 5}, {"extensions.agent.cpulimit": "5"}, id="integer-as-text"
        ),
        pytest.param({"proxy.url": "http://p:3128"}, {"proxy.url": "http://P:3128"}, id="string-case"),
        pytest.param(
            {"extensions.allowlist": ["A/b"]},
            {"extensions.allowlist": {"add": ["a/B"]}},
            id="list-add-present",
        ),
        pytest.param(
            {"extensions.allowlist": ["A/b"]}, {"extensions.allowlist": {"remove": ["a/b"]}}, id="remove"
        ),
    ],
)
def test_role_and_agent_config_module_agree_on_settings(agent, run_module, config, settings):
    role_acts = "config" in arc_agent_plan(probe(shown(), config), wanted(config=settings), CA_DEST)["steps"]
    agent.expect(["config", "list"], listing(**dict((k.replace(".", "__"), v) for k, v in config.items())))
    out = run_module(agent_config, {"settings": settings}, check_mode=True)
    assert not out.failed, out.result
    assert role_acts == out.result["changed"]


def test_role_and_modules_share_the_credential_rule():
    # The modules' argument relations are built from the same table (module_utils/_common.py).
    both = wanted(access_token="token")
    assert arc_agent_problems(both) == [
        "arc_agent_connection_state=connected: set only one credential: arc_agent_service_principal_secret"
        " or arc_agent_access_token, not both."
    ]
    none = wanted(service_principal_secret="", resource_group="")
    assert arc_agent_problems(none) == [
        "arc_agent_connection_state=connected needs arc_agent_resource_group: set it.",
        "arc_agent_connection_state=connected: a credential is needed: set"
        " arc_agent_service_principal_id with arc_agent_service_principal_secret, or arc_agent_access_token"
        " (keep secrets in a vault or an AWX"
        " credential).",
    ]
    assert credential_problems_filter({"service_principal_secret": "s"}, prefix="x_") == [
        "x_service_principal_secret needs x_service_principal_id: set it"
    ]
    assert arc_agent_problems(wanted(connection_state="unmanaged", service_principal_secret="")) == []
    tags_without_credential = wanted(state="configured", tags={"env": "x"}, service_principal_secret="")
    assert arc_agent_problems(tags_without_credential)[0].startswith(
        "arc_agent_tags (arc_agent_state=configured): a credential is needed"
    )
    assert arc_agent_problems(wanted(state="configured", config={"a": 1}, service_principal_secret="")) == []


def test_configured_state_takes_the_connected_resource_and_refuses_a_host_not_onboarded():
    role = wanted(
        state="configured",
        subscription_id="",
        resource_group="",
        location="",
        resource_name="",
        tags={"env": "x"},
    )
    plan = arc_agent_plan(probe(shown(tags={"env": "y"})), role, CA_DEST)
    assert plan["steps"] == ["connection"]
    assert plan["connection"]["resource_group"] == "arc-servers" and plan["connection"]["tenant_id"] == TENANT
    assert plan["refusal"] == ""
    assert arc_agent_plan(probe(shown(tags={"env": "x"})), role, CA_DEST)["steps"] == []
    refused = arc_agent_plan(probe({"resourceId": ""}), role, CA_DEST)
    assert refused["steps"] == ["refuse"] and "run hybridops.arc.onboard first" in refused["refusal"]


def test_a_null_setting_is_cleared_by_the_config_step():
    plan = arc_agent_plan(probe(shown()), wanted(config={"proxy.url": None, "config.mode": "full"}), CA_DEST)
    assert plan["config"] == {"proxy.url": None, "config.mode": "full"}
    assert "config" in plan["steps"], "the defaults were not read: the module decides"
    # with the defaults read (agent_info config_defaults=true), as the module decides
    role = wanted(config={"proxy.url": None, "config.mode": "full"})
    at_default = probe(shown())
    at_default["arc_agent"]["config_defaults"] = dict(DEFAULTS)
    assert arc_agent_plan(at_default, role, CA_DEST)["steps"] == [], "already at its default: nothing to do"
    set_before = probe(shown(), {"proxy.url": "http://proxy:3128"})
    set_before["arc_agent"]["config_defaults"] = dict(DEFAULTS)
    assert arc_agent_plan(set_before, role, CA_DEST)["steps"] == ["config"]


def test_gcad_runs_while_machine_configuration_is_on():
    # extd and gcad are started on demand: their path units are the units the role runs.
    running = arc_agent_plan(probe(shown()), wanted(), CA_DEST)
    assert running["steps"] == [] and running["service_units"] == [
        "himdsd.service",
        "extd.path",
        "gcad.path",
    ]
    stopped = probe(shown())
    stopped["arc_agent"]["services"]["gcService"] = "stopped"
    assert arc_agent_plan(stopped, wanted(), CA_DEST)["steps"] == ["service"]
    for setting in ({"guestconfiguration.enabled": False}, {"config.mode": "monitor"}):
        off = probe(shown(), setting)
        off["arc_agent"]["services"]["gcService"] = "stopped"
        plan = arc_agent_plan(off, wanted(config=setting), CA_DEST)
        assert plan["steps"] == [] and "gcad.path" not in plan["service_units"], setting
    turning_on = probe(shown(), {"guestconfiguration.enabled": False})
    turning_on["arc_agent"]["services"]["gcService"] = "stopped"
    plan = arc_agent_plan(turning_on, wanted(config={"guestconfiguration.enabled": None}), CA_DEST)
    assert "service" in plan["steps"] and "gcad.path" in plan["service_units"]
    assert "gcad.service" in arc_agent_plan(stopped, wanted(state="absent"), CA_DEST)["services_installed"]


# Before an install the plan refuses, from what agent_info read of the host, what a preflight
# used to assert: an unwanted downgrade, not root, a system the agent does not run on.
HOST = {
    "system": "Linux",
    "architecture": "x86_64",
    "distribution": "Debian",
    "distribution_version": "12",
    "os_family": "Debian",
    "service_mgr": "systemd",
    "user_id": "root",
    "user_uid": 0,
    "python": {"executable": "/usr/bin/python3", "version": {"major": 3, "minor": 11, "micro": 2}},
}


def bare(**host):
    return {"arc_agent": {"installed": False}, "host": dict(HOST, **host), "checksums": {}}


def test_a_bare_supported_host_is_installed_and_its_host_is_handed_to_the_install_step():
    plan = arc_agent_plan(bare(), wanted(), CA_DEST, name="h1")
    assert plan["refusal"] == "" and plan["steps"][:2] == ["install", "service"]
    assert plan["host"] == HOST


def test_the_bundle_comes_from_the_folder_a_url_or_the_control_plane(tmp_path):
    ca = tmp_path / "ca.pem"
    ca.write_text("PEM")
    folder = arc_agent_plan(bare(), wanted(), CA_DEST, name="h1")
    assert (folder["package_url"], folder["package_source"], folder["package_ca"]) == (
        "",
        "/build/wheelhouse",
        "",
    )
    served = arc_agent_plan(bare(), wanted(package_url="https://files.example/agent/"), CA_DEST, name="h1")
    assert served["package_url"] == "https://files.example/agent" and served["package_ca"] == ""
    assert "/.cache/" in served["package_source"] and served["package_source"].endswith("-%s" % VERSION)
    store = arc_agent_plan(
        bare(),
        wanted(
            package_source="control_plane", control_plane_url="https://cp:8443/", control_plane_ca=str(ca)
        ),
        CA_DEST,
        name="h1",
    )
    assert store["package_url"] == "https://cp:8443/downloads/agent/%s" % VERSION
    assert store["package_ca"] == str(ca) and store["package_source"].endswith("-%s" % VERSION)
    assert store["package_source"] != served["package_source"]


def test_the_control_plane_as_package_source_needs_its_url_and_no_other_url():
    assert arc_agent_problems(wanted(package_source="control_plane")) == [
        "arc_agent_package_source=control_plane downloads the agent from the control plane, whose URL"
        " arc_agent_control_plane_url does not give: set it (and arc_agent_control_plane_ca)."
    ]
    both = arc_agent_problems(
        wanted(package_source="control_plane", control_plane_url="https://cp", package_url="https://x")
    )
    assert len(both) == 1 and "name two sources of the agent" in both[0]
    assert arc_agent_problems(wanted(package_source="control_plane", state="absent")) == []


@pytest.mark.parametrize(
    "host, says",
    [
        (
            dict(user_id="fleetops", user_uid=1000),
            "h1: the role runs as fleetops (uid 1000) there, and installing the agent needs root",
        ),
        (
            dict(
                distribution="Alpine", distribution_version="3.20", os_family="Alpine", service_mgr="openrc"
            ),
            "this host has Linux Alpine 3.20, init system openrc, Python 3.11 at /usr/bin/python3.",
        ),
        (
            dict(python={"executable": "/usr/bin/python3", "version": {"major": 3, "minor": 8}}),
            "the system's Python 3.9 or newer",
        ),
        (
            dict(python={"executable": "/usr/local/bin/python3.12", "version": {"major": 3, "minor": 12}}),
            "Python 3.12 at /usr/local/bin/python3.12",
        ),
    ],
)
def test_a_host_the_agent_cannot_run_on_is_refused_before_any_change(host, says):
    plan = arc_agent_plan(bare(**host), wanted(), CA_DEST, name="h1")
    assert plan["steps"] == ["refuse"]
    assert says in plan["refusal"], plan["refusal"]


def test_a_downgrade_is_refused_unless_allowed():
    newer = bare()
    newer["arc_agent"] = dict(probe(shown())["arc_agent"], version="1.65.0.0")
    refused = arc_agent_plan(newer, wanted(), CA_DEST, name="h1")
    assert refused["steps"] == ["refuse"]
    assert refused["refusal"] == (
        "h1 runs agent 1.65.0.0, newer than the wanted %s. Set arc_agent_allow_downgrade=true to downgrade"
        " on purpose." % VERSION
    )
    for allowed in (True, "true", "yes"):
        plan = arc_agent_plan(newer, wanted(allow_downgrade=allowed), CA_DEST, name="h1")
        assert plan["refusal"] == "" and "install" in plan["steps"]
    assert arc_agent_plan(newer, wanted(allow_downgrade="false"), CA_DEST, name="h1")["steps"] == ["refuse"]


def test_a_running_agent_with_versions_side_by_side_is_upgraded_in_place():
    """tasks/install.yml: hybridops.arc.agent_upgrade (health check, rollback) for a running agent
    whose versions are side by side; agent_package for a bare host or the former layout."""
    older = bare()
    older["arc_agent"] = dict(probe(shown())["arc_agent"], version="1.63.0.0", side_by_side=True)
    plan = arc_agent_plan(older, wanted(), CA_DEST, name="h1")
    assert plan["upgrade_in_place"] is True and "install" in plan["steps"]
    older["arc_agent"]["side_by_side"] = False
    assert arc_agent_plan(older, wanted(), CA_DEST, name="h1")["upgrade_in_place"] is False
    stopped = bare()
    stopped["arc_agent"] = dict(
        probe(shown())["arc_agent"],
        version="1.63.0.0",
        side_by_side=True,
        services={"agentService": "stopped"},
    )
    assert arc_agent_plan(stopped, wanted(), CA_DEST, name="h1")["upgrade_in_place"] is False
    assert arc_agent_plan(bare(), wanted(), CA_DEST, name="h1")["upgrade_in_place"] is False
    same = bare()
    same["arc_agent"] = dict(probe(shown())["arc_agent"], side_by_side=True)
    assert arc_agent_plan(same, wanted(), CA_DEST, name="h1")["upgrade_in_place"] is False


def test_an_older_ansible_core_is_the_only_problem_named():
    incomplete = wanted(subscription_id="", service_principal_secret="")
    assert arc_agent_problems(incomplete, "2.16.14", "2.17.0") == [
        "hybridops.arc needs ansible-core 2.17.0 or newer (requires_ansible in its meta/runtime.yml); this"
        " controller runs ansible-core 2.16.14. Upgrade it, e.g. pip install 'ansible-core>=2.17.0', or use"
        " an execution environment that has it."
    ]
    for supported in ("2.17.0", "2.19.4", "2.20.0rc1", "2.21.0"):
        assert arc_agent_problems(incomplete, supported, "2.17.0") == arc_agent_problems(incomplete)
    assert arc_agent_problems(incomplete, supported, "2.17.0")


def test_a_host_with_problems_is_refused_without_being_read():
    plan = arc_agent_plan({"skipped": True}, wanted(), CA_DEST, problems=["a.", "b."])
    assert plan == {"steps": ["refuse"], "refusal": "a. b.", "host": {}}


def test_a_stopped_or_missing_extension_service_brings_the_service_step_and_uninstall_stops_what_exists():
    role = wanted()
    shown = probe({"resourceId": "", "status": "Disconnected"})
    shown["arc_agent"]["services"] = {"agentService": "running", "extensionService": "not installed"}
    plan = arc_agent_plan(shown, dict(role, connection_state="unmanaged"), CA_DEST)
    assert "service" in plan["steps"]
    assert plan["services_installed"] == ["himdsd.service"]
    shown["arc_agent"]["services"]["extensionService"] = "stopped"
    assert arc_agent_plan(shown, dict(role, state="absent"), CA_DEST)["services_installed"] == [
        "himdsd.service",
        "extd.service",
    ]
    # With its path unit on the host (it starts extd on demand), that one is stopped first.
    shown["checksums"] = {"/etc/systemd/system/extd.path": "0" * 64}
    assert arc_agent_plan(shown, dict(role, state="absent"), CA_DEST)["services_installed"] == [
        "himdsd.service",
        "extd.path",
        "extd.service",
    ]


def test_the_proxy_variables_become_settings_and_credentials_are_refused():
    plan = arc_agent_plan(
        probe(shown()), wanted(proxy_url="http://proxy.corp:3128", proxy_bypass=["Arc"]), CA_DEST
    )
    assert "config" in plan["steps"]
    assert plan["config"]["proxy.url"] == "http://proxy.corp:3128" and plan["config"]["proxy.bypass"] == [
        "Arc"
    ]
    same = probe(shown(), {"proxy.url": "http://proxy.corp:3128", "proxy.bypass": ["Arc"]})
    assert (
        "config"
        not in arc_agent_plan(
            same, wanted(proxy_url="http://proxy.corp:3128", proxy_bypass=["Arc"]), CA_DEST
        )["steps"]
    )
    cleared = arc_agent_plan(same, wanted(proxy_url="", proxy_bypass=[]), CA_DEST)
    assert cleared["config"] == {"proxy.url": None, "proxy.bypass": None}, "empty clears"
    assert "proxy.url" not in arc_agent_plan(same, wanted(), CA_DEST).get("config", {}), "null leaves it"
    assert arc_agent_problems(wanted(proxy_bypass=["Arc", "Azure"])) == [
        "arc_agent_proxy_bypass names Azure, which is not a service group: use AAD, ARM, Arc, AMA, ArcData."
    ]
    assert arc_agent_problems(wanted(proxy_bypass=None)) == [], "null: left alone"
    assert arc_agent_problems(wanted(proxy_url="http://bob:secret@proxy.corp:3128")) == [
        "arc_agent_proxy_url holds credentials: the agent's settings file is readable by every user, so"
        " proxy.url takes none. Give the proxy's URL without them, and its credentials in the services'"
        " environment (HTTPS_PROXY, docs/proxy.md)."
    ]


GATEWAY_ID = "/subscriptions/s/resourceGroups/g/providers/Microsoft.HybridCompute/gateways/gw"


def test_a_gateway_runs_arcproxy_and_reconnects_a_machine_not_in_gateway_mode():
    direct = probe(shown())
    plan = arc_agent_plan(direct, wanted(gateway_id=GATEWAY_ID), CA_DEST)
    assert "arcproxyd.service" in plan["service_units"]
    assert plan["steps"] == ["service", "connection"], "arcproxy to start, then the reconnect through it"
    assert plan["connection"]["gateway_id"] == GATEWAY_ID
    through = probe(dict(shown(), gatewayUrl="https://cp:8444", httpsProxy="http://localhost:40343"))
    through["arc_agent"]["services"]["arcProxy"] = "running"
    assert arc_agent_plan(through, wanted(gateway_id=GATEWAY_ID), CA_DEST)["steps"] == []
    assert "arcproxyd.service" not in arc_agent_plan(direct, wanted(), CA_DEST)["service_units"]
    removing = arc_agent_plan(through, wanted(state="absent"), CA_DEST)
    assert "arcproxyd.service" in removing["services_installed"]
