# Copyright (c) hybridops.arc contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

import hashlib
import os
import platform
import sys

import pytest
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
        "side_by_side": False,  # (no /opt/azcmagent/current on the machine running the tests)
    }
    assert "ansible_facts" not in out.result
    assert all(call["env"]["LC_ALL"] == "C" for call in agent.calls)


def test_the_defaults_of_the_settings_when_asked(agent, run_module):
    expect_reads(agent, SHOW)
    mode = {"key": "config.mode", "type": "string", "default": "full", "allowed": "", "description": ""}
    info = {"properties": [mode]}
    agent.expect(["config", "info"], info)
    out = run_module(agent_info, {"config_defaults": True})
    assert out.result["arc_agent"]["config_defaults"] == {"config.mode": "full"}
    assert agent.commands()[-1] == ["config", "info"]


def test_the_endpoints_when_asked_reachable_or_not(agent, run_module):
    row = {
        "endpoint": "https://cp:8443/healthz",
        "reachable": False,
        "proxy": "http://p:3128",
        "error": "PROXY: x",
    }
    report = {"controlPlaneUrl": "https://cp:8443", "allReachable": False, "endpoints": [row]}
    expect_reads(agent, SHOW)
    agent.expect(["check"], report, rc=26)  # check's exit code for an unreachable endpoint, with its report
    out = run_module(agent_info, {"check": True})
    assert not out.failed, out.result
    assert out.result["arc_agent"]["check"] == report
    agent.calls.clear()
    expect_reads(agent, SHOW)
    agent.fail(["check"], "AZCM0016", "no control plane to check")
    refused = run_module(agent_info, {"check": True})
    assert refused.failed and refused.result["code"] == "AZCM0016"


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
    assert out.result == {
        "changed": False,
        "arc_agent": {"installed": False},
        "host": agent_info.host_state(),
        "checksums": {},
    }
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


def test_the_host_is_returned_under_the_names_of_ansible_facts(agent, run_module):
    expect_reads(agent, SHOW)
    host = run_module(agent_info, {}).result["host"]
    # what the role's preflight and the bundle filter read (compared with this machine's own view)
    assert host["user_uid"] == os.geteuid()
    assert host["system"] == platform.system() and host["architecture"] == platform.machine()
    assert host["python"]["version"]["major"] == sys.version_info[0]
    assert host["python"]["version"]["minor"] == sys.version_info[1]
    assert host["python"]["executable"] == sys.executable
    assert host["service_mgr"] == ("systemd" if os.path.isdir("/run/systemd/system") else host["service_mgr"])
    assert host["service_mgr"]


def test_os_release_gives_distribution_and_family(tmp_path):
    release = tmp_path / "os-release"
    release.write_text('PRETTY_NAME="Ubuntu 24.04 LTS"\nID=ubuntu\nID_LIKE=debian\nVERSION_ID="24.04"\n')
    assert agent_info.os_release(str(release)) == {
        "PRETTY_NAME": "Ubuntu 24.04 LTS",
        "ID": "ubuntu",
        "ID_LIKE": "debian",
        "VERSION_ID": "24.04",
    }
    assert agent_info.os_release(str(tmp_path / "missing")) == {}


@pytest.mark.parametrize(
    "release, distribution, version, family",
    [
        ({"ID": "debian", "VERSION_ID": "11", "VERSION_CODENAME": "bullseye"}, "Debian", "11", "Debian"),
        ({"ID": "ubuntu", "ID_LIKE": "debian", "VERSION_ID": "22.04"}, "Ubuntu", "22.04", "Debian"),
        ({"ID": "rocky", "ID_LIKE": "rhel centos fedora", "VERSION_ID": "9.4"}, "Rocky", "9.4", "Fedora"),
        ({}, "Unknown", "", "Unknown"),
    ],
)
def test_distribution_and_family_come_from_os_release(release, distribution, version, family):
    host = agent_info.host_state(release)
    assert (host["distribution"], host["distribution_version"], host["os_family"]) == (
        distribution,
        version,
        family,
    )
