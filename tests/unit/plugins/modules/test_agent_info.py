# Copyright (c) hybridops.arc contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

import hashlib

from ansible_collections.hybridops.arc.plugins.modules import agent_info

SERVICES = {
    "agentService": "running",
    "arcProxy": "stopped",
    "extensionService": "running",
    "gcService": "running",
}
SHOW = {
    "agentVersion": "1.64.3414.2961",
    "resourceId": "/subscriptions/s/resourceGroups/g/providers/Microsoft.HybridCompute/machines/h1",
    "status": "Connected",
    "dependentServiceStatus": SERVICES,
}
CONFIG = {
    "localsettings": [
        {"key": "config.mode", "value": "full"},
        {"key": "incomingconnections.ports", "value": ["22"]},
    ]
}


def expect_reads(agent, show):
    agent.expect(["show"], show).expect(["config", "list"], CONFIG)


def test_connected_agent(agent, run_module):
    expect_reads(agent, SHOW)
    out = run_module(agent_info, {})
    assert out.result["changed"] is False
    assert out.result["arc_agent"] == {
        "installed": True,
        "connected": True,
        "version": "1.64.3414.2961",
        "show": SHOW,
        "config": {"config.mode": "full", "incomingconnections.ports": ["22"]},
        "services": SERVICES,
    }
    assert "ansible_facts" not in out.result
    assert all(call["env"]["LC_ALL"] == "C" for call in agent.calls)


def test_disconnected_agent_in_check_mode(agent, run_module):
    expect_reads(agent, dict(SHOW, resourceId="", status="Disconnected"))
    out = run_module(agent_info, {}, check_mode=True)
    assert out.result["arc_agent"]["connected"] is False
    assert out.result["arc_agent"]["installed"] is True


def test_version_is_asked_when_show_does_not_carry_it(agent, run_module):
    shown = {key: value for key, value in SHOW.items() if key != "agentVersion"}
    agent.expect(["show"], shown).expect(["version"], {"version": "1.64.3414.2961"})
    agent.expect(["config", "list"], CONFIG)
    out = run_module(agent_info, {})
    assert out.result["arc_agent"]["version"] == "1.64.3414.2961"
    assert agent.commands() == [["show"], ["version"], ["config", "list"]]


def test_host_without_the_agent(no_agent, run_module):
    out = run_module(agent_info, {})
    assert not out.failed
    assert out.result == {"changed": False, "arc_agent": {"installed": False}, "checksums": {}}
    assert no_agent == []


def test_broken_state_fails_with_the_code(agent, run_module):
    agent.fail(["show"], "AZCM0006", "the state file cannot be read")
    out = run_module(agent_info, {})
    assert out.failed
    assert out.result["code"] == "AZCM0006"
    assert (
        out.result["msg"] == "azcmagent show failed for this machine: AZCM0006: the state file cannot be read"
    )


def test_checksums_of_the_files_asked_for_in_the_same_read(no_agent, run_module, tmp_path):
    unit = tmp_path / "himdsd.service"
    unit.write_bytes(b"[Unit]\n")
    missing = tmp_path / "azcmagent.conf"
    out = run_module(agent_info, {"checksums": [str(unit), str(missing), str(tmp_path)]})
    assert out.result["checksums"] == {
        str(unit): hashlib.sha256(b"[Unit]\n").hexdigest(),
        str(missing): "",
        str(tmp_path): "",  # not a regular file
    }
