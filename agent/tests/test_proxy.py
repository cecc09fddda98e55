"""The agent through an HTTP proxy (docs/proxy.md): the routing rules (proxy.url over HTTPS_PROXY,
proxy.bypass groups, NO_PROXY, credentials kept out of messages), and connect, the machine's own
API and disconnect through a real proxy (Debian's tinyproxy, with its log) in front of a running
control plane: every tunnel in the proxy's log, bypassed groups absent from it, a proxy that does
not answer named in the error, proxy authentication."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from controlplane_env import ControlPlane, _free_port, start_control_plane
from machine_helpers import Machine, connect

from arc_agent.cpclient.endpoints import group_of
from arc_agent.cpclient.machine import open_machine_api
from arc_agent.cpclient.outbound import proxy_policy
from arc_agent.cpclient.proxy import AAD, ARC, ARM, ProxyError, parse_proxy, policy
from arc_agent.errors import AzcmError

TINYPROXY = shutil.which("tinyproxy") or "/usr/bin/tinyproxy"


def test_routes_follow_the_settings_then_the_environment() -> None:
    environ = {"HTTPS_PROXY": "http://env-proxy:3128", "NO_PROXY": "cp.example,10.0.0.0/8"}
    own = policy("http://proxy.corp:8080", ["Arc"], environ)
    assert own.route(AAD, "cp.example").display == "http://proxy.corp:8080"  # type: ignore[union-attr]
    assert own.route(ARC, "cp.example") is None, "bypassed group"
    assert own.route(ARM, "cp.example") is not None, "NO_PROXY is for the environment's proxy only"
    from_env = policy("", [], environ)
    assert from_env.route(AAD, "other.example").source == "HTTPS_PROXY"  # type: ignore[union-attr]
    assert from_env.route(AAD, "cp.example") is None and from_env.route(AAD, "10.1.2.3") is None
    assert from_env.route(AAD, "sub.cp.example") is None
    assert policy("", [], {}).route(ARC, "cp.example") is None
    assert policy("", [], {"https_proxy": "http://lower:3128"}).proxy == parse_proxy(
        "http://lower:3128", "https_proxy"
    )
    assert [group_of(p) for p in ("/t/oauth2/v2.0/token", "/subscriptions/s/x", "/agent/v1/register")] == [
        AAD,
        ARM,
        ARC,
    ]


def test_credentials_become_a_header_and_never_appear_in_a_message() -> None:
    proxy = parse_proxy("http://alice:s%40cret@proxy.corp:3128", "HTTPS_PROXY")
    assert proxy.authorization == "Basic YWxpY2U6c0BjcmV0"  # alice:s@cret
    assert proxy.display == "http://proxy.corp:3128" and parse_proxy("http://p", "x").port == 80
    for bad in ("https://proxy:3128", "proxy:3128", "http://", "http://p:99999", "http://p:3128/path"):
        with pytest.raises(ProxyError) as refused:
            parse_proxy(bad, "HTTPS_PROXY")
        assert "HTTPS_PROXY" in str(refused.value)


class Tinyproxy:
    """Debian's tinyproxy on a free port of 127.0.0.1, allowed to CONNECT to ``port`` (or ports)."""

    def __init__(
        self, folder: Path, port: int | tuple[int, ...], auth: tuple[str, str] | None = None
    ) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.port = _free_port()
        self.log = folder / "tinyproxy.log"
        lines = [
            f"Port {self.port}", "Listen 127.0.0.1", "Timeout 60", f"LogFile \"{self.log}\"",
            "LogLevel Connect", "MaxClients 20", "Allow 127.0.0.1",
            *(f"ConnectPort {each}" for each in (port if isinstance(port, tuple) else (port,))),
            f"PidFile \"{folder / 'tinyproxy.pid'}\"",
        ]  # fmt: skip
        if auth:
            lines.append(f"BasicAuth {auth[0]} {auth[1]}")
        config = folder / "tinyproxy.conf"
        config.write_text("\n".join(lines) + "\n")
        self.process = subprocess.Popen([TINYPROXY, "-d", "-c", str(config)], stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while True:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", self.port)) == 0:
                    break
            assert self.process.poll() is None and time.monotonic() < deadline, self.text()
            time.sleep(0.05)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)


@pytest.fixture(scope="module")
def plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    server = start_control_plane(tmp_path_factory.mktemp("cp-proxy"))
    yield server
    server.stop()


@pytest.fixture
def proxy(tmp_path: Path, plane: ControlPlane) -> Iterator[Tinyproxy]:
    running = Tinyproxy(tmp_path / "proxy", int(plane.url.rsplit(":", 1)[1]))
    yield running
    running.stop()


def _connects(log: str) -> list[str]:
    """The tunnels the proxy was asked for (its log's ``Request ...: CONNECT host:port`` lines)."""
    return [line for line in log.splitlines() if "Request (" in line and ": CONNECT 127.0.0.1:" in line]


def test_connect_the_machine_api_and_disconnect_go_through_the_proxy(
    tmp_path: Path, plane: ControlPlane, proxy: Tinyproxy
) -> None:
    machine = Machine(tmp_path / "root")
    machine.paths.state_dir.mkdir(parents=True)
    assert machine.cli("config", "set", "proxy.url", proxy.url).returncode == 0
    name = f"proxied-{uuid.uuid4().hex[:8]}"
    shown = connect(plane, machine, tmp_path, name)
    assert shown["status"] == "Connected"
    through = _connects(proxy.text())
    assert len(through) >= 1, proxy.text()

    opened = open_machine_api(machine.paths)
    assert opened is not None
    client, api = opened
    try:
        before = len(_connects(proxy.text()))
        api.guest_configuration_assignments()
        assert len(_connects(proxy.text())) == before + 1, "the machine's own API went through it"
    finally:
        client.close()

    # every group bypassed: the next requests go direct (nothing more in the proxy's log)
    assert machine.cli("config", "set", "proxy.bypass", "AAD,ARM,Arc").returncode == 0
    assert proxy_policy(machine.paths).route(ARC, "127.0.0.1") is None
    before = len(_connects(proxy.text()))
    opened = open_machine_api(machine.paths)
    assert opened is not None
    try:
        opened[1].guest_configuration_assignments()
    finally:
        opened[0].close()
    assert len(_connects(proxy.text())) == before

    assert machine.cli("config", "clear", "proxy.bypass").returncode == 0
    secrets = tmp_path / "secret.json"
    done = machine.cli(
        "disconnect", "-i", plane.onboarding.client_id, "--config", str(secrets), "-j"
    )  # onboarding may not delete: the point is the route
    assert len(_connects(proxy.text())) > before, done.stdout + done.stderr


def test_a_proxy_that_does_not_answer_is_named_and_credentials_stay_out(
    tmp_path: Path, plane: ControlPlane
) -> None:
    machine = Machine(tmp_path / "root")
    machine.paths.state_dir.mkdir(parents=True)
    dead = f"http://127.0.0.1:{_free_port()}"
    machine.env["HTTPS_PROXY"] = dead.replace("http://", "http://bob:hunter2@")
    secrets = tmp_path / "secret.json"
    secrets.write_text(json.dumps({"service-principal-secret": plane.onboarding.client_secret}))
    failed = machine.cli(
        "connect", "-s", plane.subscription_id, "-g", plane.resource_group, "-l", plane.location,
        "-t", plane.tenant_id, "-n", "never", "-i", plane.onboarding.client_id, "--config", str(secrets),
        "--control-plane-url", plane.url, "--control-plane-ca", str(plane.ca_file),
    )  # fmt: skip
    said = failed.stdout + failed.stderr
    assert failed.returncode == 26, said
    assert f"through the proxy {dead} (from HTTPS_PROXY)" in said
    assert "hunter2" not in said and "bob" not in said

    machine.env["HTTPS_PROXY"] = "https://proxy:3128"
    with pytest.raises(AzcmError) as refused:
        proxy_policy(machine.paths, machine.env)
    assert "HTTPS_PROXY is not of the form http://HOST[:PORT]" in str(refused.value)


def test_proxy_authentication(tmp_path: Path, plane: ControlPlane) -> None:
    guarded = Tinyproxy(tmp_path / "proxy", int(plane.url.rsplit(":", 1)[1]), auth=("alice", "s3cret"))
    try:
        machine = Machine(tmp_path / "root")
        machine.paths.state_dir.mkdir(parents=True)
        machine.env["HTTPS_PROXY"] = guarded.url.replace("http://", "http://alice:wrong@")
        secrets = tmp_path / "secret.json"
        secrets.write_text(json.dumps({"service-principal-secret": plane.onboarding.client_secret}))
        argv = (
            "connect", "-s", plane.subscription_id, "-g", plane.resource_group, "-l", plane.location,
            "-t", plane.tenant_id, "-n", f"auth-{uuid.uuid4().hex[:8]}", "-i", plane.onboarding.client_id,
            "--config", str(secrets), "--control-plane-url", plane.url,
            "--control-plane-ca", str(plane.ca_file), "-j",
        )  # fmt: skip
        refused = machine.cli(*argv)
        said = refused.stdout + refused.stderr  # tinyproxy answers 401 where squid answers 407
        assert refused.returncode == 26 and "Tunnel connection failed: 401" in said, said
        assert "wrong" not in refused.stdout + refused.stderr
        machine.env["HTTPS_PROXY"] = guarded.url.replace("http://", "http://alice:s3cret@")
        accepted = machine.cli(*argv)
        assert accepted.returncode == 0, accepted.stdout + accepted.stderr
        assert _connects(guarded.text())
    finally:
        guarded.stop()


def test_check_goes_the_agents_way_and_names_the_proxy(
    tmp_path: Path, plane: ControlPlane, proxy: Tinyproxy
) -> None:
    """``azcmagent check`` takes each endpoint's way: through the proxy (named in the row and in a
    PROXY column), a bypassed group direct; a proxy that refuses the tunnel fails the PROXY step."""
    machine = Machine(tmp_path / "root")
    machine.paths.state_dir.mkdir(parents=True)
    assert machine.cli("config", "set", "proxy.url", proxy.url).returncode == 0
    flags = ("--control-plane-url", plane.url, "--control-plane-ca", str(plane.ca_file))
    checked = machine.cli("check", "-j", *flags)
    document = json.loads(checked.stdout)
    assert checked.returncode == 0 and document["allReachable"], checked.stdout
    assert {row["proxy"] for row in document["endpoints"]} == {proxy.url}
    assert len(_connects(proxy.text())) == len(document["endpoints"]), "one tunnel per probe"

    assert machine.cli("config", "set", "proxy.bypass", "Arc").returncode == 0
    text = machine.cli("check", *flags)
    assert text.returncode == 0 and "PROXY" in text.stdout.splitlines()[0]
    rows = text.stdout.splitlines()[1:-1]
    assert all(" - " in line for line in rows if "/metadata/" not in line), text.stdout  # Arc: direct
    assert all(proxy.url in line for line in rows if "/metadata/" in line), text.stdout  # ARM: proxied

    assert machine.cli("config", "clear", "proxy.bypass").returncode == 0
    other_port = Tinyproxy(tmp_path / "narrow", 1)  # allows CONNECT to port 1 only: refuses ours
    try:
        assert machine.cli("config", "set", "proxy.url", other_port.url).returncode == 0
        refused = machine.cli("check", "-j", *flags)
        first = json.loads(refused.stdout)["endpoints"][0]
        assert refused.returncode == 26, refused.stdout
        assert first["error"].startswith(f"PROXY: {other_port.url} (proxy.url) refused the tunnel"), first
    finally:
        other_port.stop()


def test_extension_handlers_get_the_agents_proxy() -> None:
    from arc_agent.cpclient.proxy import GATEWAY_SOURCE, ProxyPolicy, extension_environment, parse_proxy

    assert extension_environment(policy("", [], {}), {}) == {}
    own = extension_environment(policy("http://proxy.corp:8080", ["Arc"], {}), {})
    assert own == {"HTTPS_PROXY": "http://proxy.corp:8080", "https_proxy": "http://proxy.corp:8080"}
    environ = {"https_proxy": "http://u:p%40ss@proxy.corp:3128", "NO_PROXY": ".corp"}
    inherited = extension_environment(policy("", [], environ), environ)
    assert inherited["HTTPS_PROXY"] == environ["https_proxy"], "as extd has it, credentials included"
    assert inherited["NO_PROXY"] == inherited["no_proxy"] == ".corp"
    gateway = ProxyPolicy(parse_proxy("http://localhost:40343", GATEWAY_SOURCE))
    assert extension_environment(gateway, {})["HTTPS_PROXY"] == "http://localhost:40343"
