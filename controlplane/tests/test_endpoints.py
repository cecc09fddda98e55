"""Each service under its own host name (``serve --endpoint-domain``, docs/endpoints.md): the
certificate names them, ``/agent/v1/endpoints`` lists them, a name serves its own service only
(421 with the right URL otherwise), the control plane's own address serves everything, and
the URLs it hands out (packages, next links) are on the right names."""

from __future__ import annotations

import json
import socket
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import Server, ca_context, run_cli, start_server

from arc_controlplane.endpoints import (
    AGENT_SERVICE,
    DOWNLOADS,
    GUEST_CONFIGURATION,
    IDENTITY,
    MANAGEMENT,
    NOTIFICATIONS,
    Endpoints,
    service_of,
)
from arc_controlplane.names import server_names
from arc_controlplane.pki import ensure_server_tls

DOMAIN = "arc.test"
TENANT = "00000000-0000-0000-0000-0000000000aa"
NAMES = {
    IDENTITY: "login.arc.test",
    MANAGEMENT: "management.arc.test",
    AGENT_SERVICE: "gbl.his.arc.test",
    GUEST_CONFIGURATION: "agentserviceapi.guestconfiguration.arc.test",
    NOTIFICATIONS: "guestnotificationservice.arc.test",
    DOWNLOADS: "download.arc.test",
}


@pytest.fixture(scope="module")
def named(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    running = start_server(tmp_path_factory.mktemp("named") / "data", ["--endpoint-domain", "Arc.Test."])
    yield running
    running.stop()


def request(server: Server, name: str, path: str) -> tuple[int, Any]:
    """GET ``path`` from the server at 127.0.0.1 under the host name ``name`` (SNI, the
    certificate's check and the Host header), as a client that resolved ``name`` would."""
    head = f"GET {path} HTTP/1.1\r\nHost: {name}:{server.port}\r\nConnection: close\r\n\r\n"
    with (
        socket.create_connection(("127.0.0.1", server.port), timeout=10) as raw,
        ca_context(server.ca_file).wrap_socket(raw, server_hostname=name) as tls,
    ):
        tls.sendall(head.encode())
        data = b""
        while chunk := tls.recv(65536):
            data += chunk
    answer_head, _, body = data.partition(b"\r\n\r\n")
    status = int(answer_head.split(b" ", 2)[1])
    try:
        return status, json.loads(body)
    except ValueError:
        return status, body


def test_paths_belong_to_services() -> None:
    assert service_of(f"/{TENANT}/oauth2/v2.0/token") == IDENTITY
    assert service_of(f"/{TENANT}/v2.0/.well-known/openid-configuration") == IDENTITY
    assert service_of("/subscriptions/x/resourceGroups/g?api-version=1") == MANAGEMENT
    assert service_of("/metadata/endpoints?api-version=2022-09-01") == MANAGEMENT
    assert service_of("/agent/v1/register") == AGENT_SERVICE
    assert service_of("/agent/v1/machines/v/heartbeat") == AGENT_SERVICE
    assert service_of("/agent/v1/machines/v/notifications?wait=30") == NOTIFICATIONS
    assert service_of("/agent/v1/machines/v/guestConfigurationAssignments/a/reports") == GUEST_CONFIGURATION
    assert service_of("/agent/v1/configurationPackages/n/1.0.0/n.zip") == GUEST_CONFIGURATION
    assert service_of("/agent/v1/extensionPackages/p/t/1.0") == DOWNLOADS
    assert service_of("/agent/v1/agentPackages?target=x") == DOWNLOADS
    assert service_of("/downloads/agent/1.0/x") == DOWNLOADS
    assert service_of("/healthz") is None


def test_without_a_domain_everything_is_the_public_url() -> None:
    plain = Endpoints("https://cp.example:8443/")
    assert set(plain.document().values()) == {"https://cp.example:8443"}
    assert plain.names() == ()
    assert plain.misdirected("cp.example:8443", "/subscriptions") is None


def test_names_and_misdirection() -> None:
    named = Endpoints("https://10.0.0.1:443", DOMAIN)
    assert named.url(AGENT_SERVICE) == "https://gbl.his.arc.test"  # port 443 is left out
    assert set(named.names()) == set(NAMES.values())
    assert named.misdirected("GBL.HIS.arc.test:443", "/subscriptions/x") == "https://management.arc.test"
    assert named.misdirected("gbl.his.arc.test", "/agent/v1/register") is None
    assert named.misdirected("10.0.0.1:443", "/subscriptions/x") is None  # the own address serves all
    assert named.misdirected("download.arc.test", "/healthz") is None


def test_the_certificate_names_every_service(named: Server) -> None:
    for name in NAMES.values():
        assert request(named, name, "/healthz")[0] == 200
    with pytest.raises(ssl.SSLCertVerificationError):
        request(named, "other.arc.test", "/healthz")


def test_the_agent_reads_where_each_service_is(named: Server) -> None:
    status, document = request(named, "127.0.0.1", "/agent/v1/endpoints")
    assert status == 200
    assert document == {service: f"https://{name}:{named.port}" for service, name in NAMES.items()}
    assert request(named, NAMES[AGENT_SERVICE], "/agent/v1/endpoints") == (status, document)


def test_a_name_serves_its_own_service_only(named: Server) -> None:
    discovery = f"/{TENANT}/v2.0/.well-known/openid-configuration"
    assert request(named, NAMES[IDENTITY], discovery)[0] in (200, 400)  # served (unknown tenant: 400)
    status, body = request(named, NAMES[IDENTITY], "/subscriptions?api-version=2022-12-01")
    assert status == 421
    assert body["error"]["code"] == "MisdirectedRequest"
    assert f"https://management.arc.test:{named.port}" in body["error"]["message"]
    assert request(named, NAMES[MANAGEMENT], "/subscriptions?api-version=2022-12-01")[0] == 401
    status, body = request(named, NAMES[AGENT_SERVICE], discovery)
    assert status == 421
    assert f"https://login.arc.test:{named.port}" in body["error"]["message"]
    assert request(named, NAMES[NOTIFICATIONS], "/agent/v1/register")[0] == 421
    assert request(named, NAMES[AGENT_SERVICE], "/agent/v1/machines/v/notifications")[0] == 421
    # the control plane's own address keeps serving every service
    assert request(named, "127.0.0.1", "/subscriptions?api-version=2022-12-01")[0] == 401
    assert request(named, "127.0.0.1", discovery)[0] in (200, 400)


def test_a_bad_domain_is_refused() -> None:
    for bad in ("nodots", "*.arc.test", "a b.test", ""):
        result = run_cli("serve", "--endpoint-domain", bad, "--port", "1")
        assert result.returncode == 2, result.stderr
        assert "is not a DNS domain (e.g. arc.example.com)" in result.stderr


def test_an_operator_certificate_must_name_the_services(tmp_path: Path) -> None:
    own = ensure_server_tls(tmp_path / "own-pki", server_names("127.0.0.1", "h", ["login.arc.test"]))
    result = run_cli(
        "serve",
        "--data-dir", str(tmp_path / "data"),
        "--port", "1",
        "--cert", str(own.cert_file),
        "--key", str(own.key_file),
        "--endpoint-domain", DOMAIN,
    )  # fmt: skip
    assert result.returncode != 0
    assert "does not name management.arc.test, gbl.his.arc.test" in result.stderr
    assert "login.arc.test," not in result.stderr


def test_the_gateway_admits_the_services_names(tmp_path: Path) -> None:
    from arc_controlplane.server.serve import gateway_endpoints
    from arc_controlplane.settings import ServerSettings

    settings = ServerSettings(data_dir=tmp_path, port=8443, endpoint_domain=DOMAIN)
    admitted = gateway_endpoints(settings, "https://10.0.0.1:8443")
    for name in NAMES.values():
        assert (name, 8443) in admitted
    assert ("10.0.0.1", 8443) in admitted
    assert ("other.arc.test", 8443) not in admitted


def test_links_stay_on_the_host_the_client_called() -> None:
    """Package URIs, next links and operation headers: on the services' names for a client that
    uses them, else on the control plane's URL (clients refuse links to another host)."""
    named = Endpoints("https://10.0.0.1:8443", DOMAIN)
    assert named.url_for(MANAGEMENT, "management.arc.test:8443") == "https://management.arc.test:8443"
    assert named.url_for(DOWNLOADS, "GBL.his.arc.test:8443") == "https://download.arc.test:8443"
    assert named.url_for(MANAGEMENT, "10.0.0.1:8443") == "https://10.0.0.1:8443"
    assert named.url_for(DOWNLOADS, "cp.example") == "https://10.0.0.1:8443", "a machine that knows no names"
    assert (
        Endpoints("https://cp.example:8443").url_for(DOWNLOADS, "cp.example:8443")
        == "https://cp.example:8443"
    )
