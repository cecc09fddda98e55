# Copyright (c) hybridops.arc contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# Verify of the proxy scenario, on the host (testinfra): the machine is connected although it has
# no direct route to the control plane, show names the proxy, and its settings hold it.

import json

NO_ROUTE = """
import socket, sys
s = socket.socket()
s.settimeout(5)
try:
    s.connect((sys.argv[1], int(sys.argv[2])))
except OSError as error:
    print(error.strerror)
else:
    print("connected")
"""


def _show(host):
    return json.loads(host.check_output("azcmagent show -j"))


def test_connected_through_the_proxy(host):
    shown = _show(host)
    assert shown["status"] == "Connected"
    assert shown["httpsProxy"].startswith("http://") and shown["httpsProxy"].endswith(":3128")
    assert shown["proxyBypassList"] == []


def test_there_is_no_direct_route_to_the_control_plane(host):
    url = _show(host)["controlPlaneUrl"]
    address, port = url.removeprefix("https://").rsplit(":", 1)
    said = host.check_output(f"python3 -c '{NO_ROUTE}' {address} {port}")
    assert said == "Network is unreachable"


def test_the_machine_knows_its_services_by_name_and_has_no_route_to_them(host):
    """connect kept where the control plane's services are (docs/endpoints.md); the host
    resolves each name, and none is reachable but through the proxy."""
    state = json.loads(host.file("/var/opt/azcmagent/agentconfig.json").content_string)
    named = state["endpoints"]
    assert set(named) == {
        "identity",
        "management",
        "agentService",
        "guestConfiguration",
        "notifications",
        "downloads",
    }
    for url in named.values():
        name, port = url.removeprefix("https://").rsplit(":", 1)
        assert host.check_output(f"getent hosts {name}")
        assert host.check_output(f"python3 -c '{NO_ROUTE}' {name} {port}") == "Network is unreachable"


def test_the_setting_is_in_the_agents_config(host):
    value = json.loads(host.check_output("azcmagent config get proxy.url -j"))["value"]
    assert value == _show(host)["httpsProxy"]
