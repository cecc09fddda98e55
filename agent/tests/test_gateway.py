"""Gateway mode (docs/gateway.md): the Arc proxy's rules, and a machine that connects with
``--gateway-id`` and works through a real ``arcproxy`` process and the control plane's gateway
service: every request a tunnel through the gateway, refusals passed on by name, a bypassed host
direct, switching ``connection.type`` back and forth, an enterprise proxy (Debian's tinyproxy) in
front of the gateway, and bad input that leaves the previous setting in force."""

from __future__ import annotations

import http.client
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from controlplane_env import ControlPlane, Principal, _free_port, start_control_plane
from machine_helpers import Machine, connect
from test_proxy import Tinyproxy

from arc_agent.arcproxy.core import (
    LISTEN_PORT,
    GatewayFileError,
    GatewaySettings,
    Refusal,
    Route,
    gateway_settings,
    route,
    status_of,
)
from arc_agent.cpclient.machine import open_machine_api
from arc_agent.cpclient.outbound import proxy_policy
from arc_agent.cpclient.proxy import ARC

GATEWAY = GatewaySettings(
    "/subscriptions/s/resourceGroups/g/providers/Microsoft.HybridCompute/gateways/gw",
    "0f8fad5b-d9cb-469f-a165-70867728950e",
    "https://gw.example:8444",
    ("*.corp.example", "pkg.example"),
)


def test_the_arc_proxy_routes_tunnels_and_refuses_the_rest() -> None:
    assert route(b"CONNECT cp.example:443 HTTP/1.1\r\nHost: cp.example:443", GATEWAY) == Route(
        "cp.example", 443, via_gateway=True
    )
    assert route(b"CONNECT pkg.example:443 HTTP/1.1", GATEWAY) == Route("pkg.example", 443, via_gateway=False)
    assert route(b"CONNECT a.corp.example:443 HTTP/1.1", GATEWAY) == Route("a.corp.example", 443, False)
    assert route(b"CONNECT [::1]:8443 HTTP/1.1", GATEWAY) == Route("::1", 8443, True)
    for head, status in [
        (b"GET http://cp.example/ HTTP/1.1", 405),
        (b"CONNECT cp.example HTTP/1.1", 400),
        (b"CONNECT cp.example:0 HTTP/1.1", 400),
        (b"garbage", 400),
    ]:
        refused = route(head, GATEWAY)
        assert isinstance(refused, Refusal) and refused.status == status, head
    nothing = route(b"CONNECT cp.example:443 HTTP/1.1", None)
    assert isinstance(nothing, Refusal) and nothing.status == 503 and "--gateway-id" in nothing.reason
    answer = Refusal(403, "the gateway gw does not allow x:1").encode()
    assert answer.startswith(b"HTTP/1.1 403 Forbidden: the gateway gw does not allow x:1\r\n")
    assert status_of(answer) == (403, "the gateway gw does not allow x:1")
    assert status_of(b"HTTP/1.1 200 Connection established\r\n\r\n") == (200, "Connection established")


def test_gateway_descriptions_are_checked() -> None:
    good = {"id": "/x", "gatewayId": "g", "endpoint": "https://gw:8444", "bypass": ["A.example"]}
    assert gateway_settings(good).bypass == ("a.example",) and gateway_settings(good).port == 8444
    for bad, named in [
        ({**good, "endpoint": None}, "gateway service"),
        ({**good, "endpoint": "http://gw:8444"}, "https://HOST:PORT"),
        ({**good, "gatewayId": ""}, "gatewayId"),
        ({**good, "bypass": "a"}, "bypass"),
        ([], "JSON object"),
    ]:
        with pytest.raises(GatewayFileError, match=named):
            gateway_settings(bad)


# --- a machine through a real gateway ---------------------------------------------------------


class ArcProxyProcess:
    """``arcproxy`` for one machine's root, on the real port (localhost:40343)."""

    def __init__(self, machine: Machine) -> None:
        self.machine = machine
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        output = (self.machine.root.parent / "arcproxy.out").open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "arc_agent.arcproxy.main", "-v"],
            stdout=output,
            stderr=output,
            env=self.machine.env,
        )
        deadline = time.monotonic() + 15
        while True:
            try:
                http.client.HTTPConnection("127.0.0.1", LISTEN_PORT, timeout=1).connect()
                return
            except OSError:
                assert self.process.poll() is None, self.log()
                assert time.monotonic() < deadline, "arcproxy did not listen within 15 s"
                time.sleep(0.1)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)
        self.process = None

    def log(self) -> str:
        """What it logged (stderr: its unit appends that to log/arcproxy.log)."""
        path = self.machine.root.parent / "arcproxy.out"
        return path.read_text(errors="replace") if path.exists() else ""

    def tunnels(self, how: str = "via https://") -> int:
        return sum(1 for line in self.log().splitlines() if "tunnel to" in line and how in line)


@pytest.fixture(scope="module")
def plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    server = start_control_plane(tmp_path_factory.mktemp("cp-gateway"), ["--gateway-port", str(_free_port())])
    yield server
    server.stop()


@pytest.fixture(scope="module")
def admin(plane: ControlPlane) -> Principal:
    return plane.principal("gateway-admin", "Resource Administrator")


@pytest.fixture(scope="module")
def gateway(plane: ControlPlane, admin: Principal) -> dict[str, Any]:
    status, created = plane.manage("PUT", "gateways/lab-gw", admin, {"location": plane.location})
    assert status == 201, created
    return dict(created)


def _tunnel(target: str) -> tuple[int, str]:
    """What the Arc proxy answers a CONNECT to ``target`` (status, status line)."""
    connection = http.client.HTTPConnection("127.0.0.1", LISTEN_PORT, timeout=15)
    try:
        connection.request("CONNECT", target, headers={"Host": target})
        reply = connection.getresponse()
        return reply.status, f"{reply.status} {reply.reason}"
    finally:
        connection.close()


def _machine_reads_itself(machine: Machine) -> dict[str, Any]:
    opened = open_machine_api(machine.paths)
    assert opened is not None
    client, api = opened
    try:
        return api.read()
    finally:
        client.close()


def _connection_type(machine: Machine) -> str:
    return machine.cli("config", "get", "connection.type").stdout.strip()


def test_a_machine_connects_and_works_through_the_gateway(
    tmp_path: Path, plane: ControlPlane, admin: Principal, gateway: dict[str, Any]
) -> None:
    machine = Machine(tmp_path / "root")
    machine.paths.state_dir.mkdir(parents=True)
    arcproxy = ArcProxyProcess(machine)
    arcproxy.start()
    try:
        shown = connect(plane, machine, tmp_path, "through-gateway", "--gateway-id", gateway["id"])
        assert shown["status"] == "Connected", shown
        assert shown["httpsProxy"] == "http://localhost:40343", shown
        assert shown["gatewayUrl"] == gateway["properties"]["gatewayEndpoint"]
        assert _connection_type(machine) == "gateway"
        assert arcproxy.tunnels() >= 1, arcproxy.log()
        status, linked = plane.manage(
            "GET", "machines/through-gateway/providers/Microsoft.HybridCompute/settings/default", admin
        )
        assert (
            status == 200 and linked["properties"]["gatewayProperties"]["gatewayResourceId"] == gateway["id"]
        )

        before = arcproxy.tunnels()
        view = _machine_reads_itself(machine)
        assert view["gateway"]["gatewayId"] == gateway["properties"]["gatewayId"]
        assert arcproxy.tunnels() == before + 1, "the machine's own API went through the gateway"

        # check goes the services' way: every endpoint through the Arc proxy and the gateway.
        checked = machine.cli("check", "-j")
        assert checked.returncode == 0, checked.stdout + checked.stderr
        rows = json.loads(checked.stdout)["endpoints"]
        assert rows and {row["proxy"] for row in rows} == {"http://localhost:40343"}, rows

        # What the gateway does not allow is refused by name, and the Arc proxy says so.
        status_code, line = _tunnel("example.com:443")
        assert status_code == 403 and "does not allow example.com:443" in line, line
        assert "refused" in arcproxy.log()
        # A host in the gateway's bypass list goes direct (after the machine learns the list).
        assert (
            plane.manage("PATCH", "gateways/lab-gw", admin, {"properties": {"gatewayBypass": ["127.0.0.1"]}})[
                0
            ]
            == 200
        )
        switched = machine.cli("config", "set", "connection.type", "gateway")
        assert switched.returncode == 0, switched.stdout + switched.stderr
        before = arcproxy.tunnels("direct")
        _machine_reads_itself(machine)
        assert arcproxy.tunnels("direct") == before + 1, arcproxy.log()
        plane.manage("PATCH", "gateways/lab-gw", admin, {"properties": {"gatewayBypass": []}})

        # Back to direct: nothing more through the Arc proxy; and to the gateway again.
        direct = machine.cli("config", "set", "connection.type", "direct")
        assert direct.returncode == 0 and _connection_type(machine) == "direct"
        assert json.loads(machine.cli("show", "-j").stdout)["httpsProxy"] == ""
        assert proxy_policy(machine.paths).route(ARC, "127.0.0.1") is None
        before = arcproxy.tunnels()
        _machine_reads_itself(machine)
        assert arcproxy.tunnels() == before
        again = machine.cli("config", "set", "connection.type", "gateway", "-j")
        assert again.returncode == 0, again.stdout + again.stderr
        _machine_reads_itself(machine)
        assert arcproxy.tunnels() == before + 2, "the proof of the switch, then the request"

        # The Arc proxy stopped: switching on fails with AZCM0004 and the setting stays as it was.
        machine.cli("config", "set", "connection.type", "direct")
        arcproxy.stop()
        refused = machine.cli("config", "set", "connection.type", "gateway")
        assert refused.returncode == 4, refused.stdout + refused.stderr
        assert "does not listen on localhost:40343" in refused.stderr
        assert _connection_type(machine) == "direct" and not machine.paths.gateway_file.exists()
        arcproxy.start()

        # An unlinked machine has no gateway to switch to.
        plane.manage(
            "PUT",
            "machines/through-gateway/providers/Microsoft.HybridCompute/settings/default",
            admin,
            {"properties": {}},
        )
        unlinked = machine.cli("config", "set", "connection.type", "gateway")
        assert unlinked.returncode == 23 and "linked to none" in unlinked.stderr, unlinked.stderr
        assert _connection_type(machine) == "direct"
    finally:
        arcproxy.stop()


def test_an_enterprise_proxy_in_front_of_the_gateway(
    tmp_path: Path, plane: ControlPlane, gateway: dict[str, Any]
) -> None:
    """agents → arcproxy → enterprise proxy → gateway → control plane, as the real chain."""
    gateway_port = int(gateway["properties"]["gatewayEndpoint"].rsplit(":", 1)[1])
    api_port = int(plane.url.rsplit(":", 1)[1])
    proxy = Tinyproxy(tmp_path / "proxy", (api_port, gateway_port))
    machine = Machine(tmp_path / "root")
    machine.paths.state_dir.mkdir(parents=True)
    assert machine.cli("config", "set", "proxy.url", proxy.url).returncode == 0
    arcproxy = ArcProxyProcess(machine)
    arcproxy.start()

    def tunnels_to(port: int) -> int:
        return sum(1 for line in proxy.text().splitlines() if f": CONNECT 127.0.0.1:{port}" in line)

    try:
        shown = connect(plane, machine, tmp_path, "chained", "--gateway-id", gateway["id"])
        assert shown["upstreamProxy"] == proxy.url and shown["httpsProxy"] == "http://localhost:40343"
        assert tunnels_to(gateway_port) >= 1, proxy.text()
        # Reading the gateway (before gateway mode) went to the API through the proxy, as the
        # real agent needs the management endpoint for it; from then on only the gateway is used.
        direct_before, gateway_before = tunnels_to(api_port), tunnels_to(gateway_port)
        _machine_reads_itself(machine)
        assert tunnels_to(api_port) == direct_before
        assert tunnels_to(gateway_port) == gateway_before + 1
    finally:
        arcproxy.stop()
        proxy.stop()


def test_bad_gateway_ids_change_nothing(tmp_path: Path, plane: ControlPlane, gateway: dict[str, Any]) -> None:
    machine = Machine(tmp_path / "root")
    machine.paths.state_dir.mkdir(parents=True)
    secrets = tmp_path / "secret.json"
    secrets.write_text(json.dumps({"service-principal-secret": plane.onboarding.client_secret}))
    base = (
        "connect", "-s", plane.subscription_id, "-g", plane.resource_group, "-l", plane.location,
        "-t", plane.tenant_id, "-n", "never", "-i", plane.onboarding.client_id, "--config", str(secrets),
        "--control-plane-url", plane.url, "--control-plane-ca", str(plane.ca_file),
    )  # fmt: skip
    malformed = machine.cli(*base, "--gateway-id", "gw-1")
    assert malformed.returncode == 23 and "not the resource id of an Arc gateway" in malformed.stderr
    missing = gateway["id"].rsplit("/", 1)[0] + "/nowhere"
    absent = machine.cli(*base, "--gateway-id", missing)
    assert absent.returncode == 23 and "nowhere" in absent.stderr and "ResourceNotFound" in absent.stderr
    no_proxy = machine.cli(*base, "--gateway-id", gateway["id"])  # no arcproxy runs
    assert no_proxy.returncode == 4, no_proxy.stdout + no_proxy.stderr
    for failed in (malformed, absent, no_proxy):
        assert "Connected" not in failed.stdout
    assert _connection_type(machine) == "direct"
    assert not machine.paths.gateway_file.exists() and not machine.paths.agent_config.exists()
