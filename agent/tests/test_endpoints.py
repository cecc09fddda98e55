"""Endpoints per service (docs/endpoints.md): which service a request is, where each goes, the
``proxy.bypass`` group of each, and a machine whose control plane serves each service under its
own name (``serve --endpoint-domain``): connect learns the names, and from then on every request
of the CLI and himds goes to its service's name. The names resolve through the host's resolver
(``/etc/hosts``, private to the test's mount namespace); once connected, the name the machine
connected with no longer resolves to the control plane, so a request that went there would fail."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from controlplane_env import ControlPlane, start_control_plane
from himds_helpers import wait_for
from machine_helpers import Machine, connect

from arc_agent.config.connection import ConnectionState, load_state
from arc_agent.cpclient.endpoints import (
    AGENT_SERVICE,
    DOWNLOADS,
    GUEST_CONFIGURATION,
    IDENTITY,
    MANAGEMENT,
    NOTIFICATIONS,
    Origin,
    endpoints,
    group_of,
    on_control_plane,
    service_of,
)
from arc_agent.cpclient.proxy import AAD, ARC, ARM, policy
from arc_agent.cpclient.transport import HttpsClient
from arc_agent.errors import AzcmError

NAMED = {
    IDENTITY: "https://login.arc.test:8443",
    MANAGEMENT: "https://management.arc.test:8443",
    AGENT_SERVICE: "https://gbl.his.arc.test:8443",
    GUEST_CONFIGURATION: "https://agentserviceapi.guestconfiguration.arc.test:8443",
    NOTIFICATIONS: "https://guestnotificationservice.arc.test:8443",
    DOWNLOADS: "https://download.arc.test:8443",
}
TOKEN = "/metadata/identity/oauth2/token?api-version=2020-06-01&resource=https%3A%2F%2Fvault.azure.net"


def test_each_request_belongs_to_a_service_and_a_bypass_group() -> None:
    for path, service, group in [
        ("/t/oauth2/v2.0/token", IDENTITY, AAD),
        ("/t/v2.0/.well-known/openid-configuration", IDENTITY, AAD),
        ("/subscriptions/s/resourceGroups/g?api-version=1", MANAGEMENT, ARM),
        ("/agent/v1/register", AGENT_SERVICE, ARC),
        ("/agent/v1/machines/v/heartbeat", AGENT_SERVICE, ARC),
        ("/agent/v1/machines/v/notifications?wait=30", NOTIFICATIONS, ARC),
        ("/agent/v1/machines/v/guestConfigurationAssignments", GUEST_CONFIGURATION, ARC),
        ("/agent/v1/configurationPackages/n/1/n.zip", GUEST_CONFIGURATION, ARC),
        ("/agent/v1/extensionPackages/p/t/1", DOWNLOADS, ARC),
        ("/agent/v1/packageSigningKey", DOWNLOADS, ARC),
        ("/agent/v1/agentPackages?target=x", DOWNLOADS, ARC),
    ]:
        assert (service_of(path), group_of(path)) == (service, group), path
    assert service_of("/healthz") is None


def test_requests_go_to_their_service_and_bypass_by_group() -> None:
    proxied = policy("http://proxy.corp:3128", ["Arc"], {})
    client = HttpsClient("https://cp.arc.test:8443", None, proxies=proxied, named=NAMED)
    try:
        origin, proxy = client.route("/agent/v1/machines/v/heartbeat")
        assert (origin, proxy) == (Origin("gbl.his.arc.test", 8443), None), "Arc is bypassed"
        origin, proxy = client.route("/t/oauth2/v2.0/token")
        assert origin == Origin("login.arc.test", 8443) and proxy is not None
        assert client.route("/healthz")[0] == Origin("gbl.his.arc.test", 8443), "with the agent service"
        assert client.endpoints.document() == NAMED
    finally:
        client.close()
    # without names (a control plane that has none): everything at its URL
    plain = endpoints("https://cp.example:8443")
    assert plain.origin_of("/agent/v1/register") == plain.base and plain.document() == {}
    # a name equal to the URL is not kept; a malformed one is an error that names it
    assert endpoints("https://cp.example", {IDENTITY: "https://CP.example:443/"}).named == {}
    with pytest.raises(AzcmError, match="the control plane's downloads endpoint 'http://x' is not of"):
        endpoints("https://cp.example", {DOWNLOADS: "http://x"})


def test_packages_are_fetched_from_the_control_plane_and_its_names_only() -> None:
    where = endpoints("https://cp.arc.test:8443", NAMED)
    assert on_control_plane("https://download.arc.test:8443/agent/v1/extensionPackages/p/t/1", where) == (
        "/agent/v1/extensionPackages/p/t/1"
    )
    assert on_control_plane("https://cp.arc.test:8443/agent/v1/agentPackages/1/x?a=b", where) == (
        "/agent/v1/agentPackages/1/x?a=b"
    )
    for foreign in [
        "https://download.arc.test:9999/agent/v1/extensionPackages/p/t/1",  # another port
        "https://evil.example/agent/v1/extensionPackages/p/t/1",
        "http://download.arc.test:8443/agent/v1/extensionPackages/p/t/1",
        "https://download.arc.test:8443/subscriptions/s",  # not a package route
        "https://download.arc.test:8443/agent/v1/../../etc/passwd",
    ]:
        assert on_control_plane(foreign, where) is None, foreign


def test_the_connection_state_keeps_the_names(tmp_path: Path) -> None:
    from himds_helpers import make_state

    state = make_state(endpoints=dict(NAMED))
    document = state.to_json()
    assert document["endpoints"] == NAMED
    assert ConnectionState.from_json(document, tmp_path / "agentconfig.json") == state
    with pytest.raises(AzcmError, match="'endpoints' must map names to strings"):
        ConnectionState.from_json({**document, "endpoints": ["x"]}, tmp_path / "agentconfig.json")
    legacy = {k: v for k, v in document.items() if k != "endpoints"}
    assert ConnectionState.from_json(legacy, tmp_path / "agentconfig.json").endpoints == {}


# --- a machine and a control plane with names ---------------------------------------------------

SERVICE_NAMES = [
    "login.arc.test",
    "management.arc.test",
    "gbl.his.arc.test",
    "agentserviceapi.guestconfiguration.arc.test",
    "guestnotificationservice.arc.test",
    "download.arc.test",
]
needs_namespaces = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("unshare") is None,
    reason="needs root and unshare(1) for a private /etc/hosts",
)


@pytest.fixture(scope="module")
def plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    server = start_control_plane(
        tmp_path_factory.mktemp("named-cp"),
        ["--endpoint-domain", "arc.test", "--san", "cp.arc.test", "--heartbeat-interval", "5"],
    )
    yield server
    server.stop()


def _hosts(path: Path, first_address: str) -> None:
    """``/etc/hosts`` of the test's namespace: the services at 127.0.0.1, the control plane's
    own name (the one the machine connects with) at ``first_address``. Written in place: the
    namespaces bind-mount this very file."""
    lines = ["127.0.0.1 localhost", f"127.0.0.1 {' '.join(SERVICE_NAMES)}", f"{first_address} cp.arc.test"]
    with path.open("r+" if path.exists() else "w", encoding="utf-8") as hosts:
        hosts.seek(0)
        hosts.truncate()
        hosts.write("\n".join(lines) + "\n")


@needs_namespaces
def test_a_machine_uses_each_service_by_its_name(plane: ControlPlane, tmp_path: Path) -> None:
    hosts = tmp_path / "hosts"
    _hosts(hosts, "127.0.0.1")
    machine = Machine(tmp_path / "root")
    machine.paths.state_dir.mkdir(parents=True)
    private_hosts = 'mount --bind "$0" /etc/hosts && exec "$@"'
    machine.wrap = ["unshare", "--mount", "--", "sh", "-c", private_hosts, str(hosts)]
    url = plane.url.replace("127.0.0.1", "cp.arc.test")
    port = url.rsplit(":", 1)[1]
    shown = connect(dataclasses.replace(plane, url=url), machine, tmp_path, "named-1")
    assert shown["status"] == "Connected"
    state = load_state(machine.paths.agent_config)
    assert state is not None and state.control_plane_url == url
    assert state.endpoints == {
        service: f"https://{name}:{port}" for service, name in zip(NAMED, SERVICE_NAMES, strict=True)
    }

    # From here on the name the machine connected with leads nowhere: what works, works by the
    # services' own names.
    _hosts(hosts, "127.0.0.9")
    unreachable = machine.cli("check", "--control-plane-url", url, "-j")
    assert unreachable.returncode == 26, unreachable.stdout
    machine.start_himds()
    try:

        def heartbeat_seen() -> bool:
            status = json.loads(machine.cli("show", "status", "lastHeartbeat", "-j").stdout)
            return bool(status["status"] == "Connected" and status["lastHeartbeat"] > shown["lastHeartbeat"])

        wait_for(heartbeat_seen, 20, "a heartbeat to gbl.his.arc.test")
        status, headers, _ = machine.local(TOKEN)
        assert status == 401
        secret = Path(headers["www-authenticate"].removeprefix("Basic realm=")).read_text()
        status, _, body = machine.local(TOKEN, {"Authorization": f"Basic {secret}"})
        assert status == 200 and body["access_token"], body

        # check probes each service at its name (health with the agent service)
        checked = machine.cli("check", "-j")
        assert checked.returncode == 0, checked.stdout + checked.stderr
        rows = {row["purpose"]: row for row in json.loads(checked.stdout)["endpoints"]}
        for purpose, name in [
            ("control plane health", "gbl.his.arc.test"),
            ("token service (OIDC discovery)", "login.arc.test"),
            ("management (ARM metadata)", "management.arc.test"),
            ("agent API", "gbl.his.arc.test"),
            ("notifications", "guestnotificationservice.arc.test"),
            ("machine configuration", "agentserviceapi.guestconfiguration.arc.test"),
        ]:
            assert rows[purpose]["endpoint"].startswith(f"https://{name}:{port}/"), rows[purpose]

        admin = plane.principal("named-admin", "Resource Administrator")
        gone = machine.cli("disconnect", "--service-principal-id", admin.client_id, "-j",
                           "--service-principal-secret", admin.client_secret)  # fmt: skip
        assert gone.returncode == 0, gone.stdout + gone.stderr
    finally:
        if machine.himds is not None:
            machine.stop_himds()
    assert subprocess.run(["getent", "hosts", "gbl.his.arc.test"], capture_output=True).returncode != 0, (
        "the names were private to the test's namespaces"
    )
