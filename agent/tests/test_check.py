"""``azcmagent check`` against a real control plane, and against servers that fail each step.

The control plane is the real one (``arc-controlplane serve`` over HTTPS); the failing servers
are real sockets on loopback: a closed port, a wrong CA, a listener that never speaks TLS, a
TLS server that never finishes its answer, one that answers 404.
"""

from __future__ import annotations

import json
import os
import re
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from certificates import certificate_pem, key_pem, self_signed
from conftest import run_module
from controlplane_env import ControlPlane, start_control_plane

from arc_agent.cli import check
from arc_agent.cli.main import main
from arc_agent.paths import AgentPaths

CLI = "arc_agent.cli.main"


@pytest.fixture(scope="module")
def plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    server = start_control_plane(tmp_path_factory.mktemp("controlplane"))
    yield server
    server.stop()


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "root"


def azcmagent(root: Path, *args: str, timeout: float = 60) -> Any:
    return run_module(CLI, *args, env={**os.environ, "AZCMAGENT_ROOT": str(root)}, timeout=timeout)


def check_json(root: Path, *args: str) -> dict[str, Any]:
    """``check -j``: exit code 0 when every endpoint is reachable, 26 (AZCM0026) when one is not,
    the JSON either way."""
    result = azcmagent(root, "check", "-j", *args)
    document: dict[str, Any] = json.loads(result.stdout)
    assert result.returncode == (0 if document["allReachable"] else 26), result.stdout + result.stderr
    return document


def plane_flags(plane: ControlPlane) -> list[str]:
    return ["--control-plane-url", plane.url, "--control-plane-ca", str(plane.ca_file)]


def test_every_endpoint_of_a_running_control_plane_is_reachable(plane: ControlPlane, root: Path) -> None:
    document = check_json(root, *plane_flags(plane))
    assert document["controlPlaneUrl"] == plane.url
    assert document["caFile"] == str(plane.ca_file)
    assert document["allReachable"] is True
    rows = document["endpoints"]
    machine = f"{plane.url}/agent/v1/machines/00000000-0000-0000-0000-000000000000"
    assert [row["endpoint"] for row in rows] == [
        f"{plane.url}/healthz",
        f"{plane.url}/metadata/endpoints?api-version=2022-09-01",
        f"{plane.url}/agent/v1/register",
        f"{machine}/notifications?generation=0&wait=1",
        f"{machine}/guestConfigurationAssignments",
    ]
    assert [row["purpose"] for row in rows] == [
        "control plane health",
        "management (ARM metadata)",
        "agent API",
        "notifications",
        "machine configuration",
    ]
    assert [row["httpStatus"] for row in rows] == [200, 200, 401, 401, 401]  # no credentials: refused
    for row in rows:
        assert set(row) == {
            "endpoint",
            "purpose",
            "reachable",
            "tls",
            "timeMs",
            "httpStatus",
            "address",
            "private",
            "proxy",
            "error",
        }
        assert row["reachable"] is True and row["error"] == "" and row["proxy"] == ""
        assert row["tls"] in ("TLSv1.2", "TLSv1.3")
        assert row["address"] == "127.0.0.1" and row["private"] is True
        assert 0 <= row["timeMs"] < 5000


def test_the_text_is_an_aligned_table_with_a_summary(plane: ControlPlane, root: Path) -> None:
    result = azcmagent(root, "check", *plane_flags(plane))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert re.fullmatch(r"ENDPOINT +REACHABLE +TLS +PROXY +TIME +NOTE", lines[0])
    columns = [lines[0].index(name) for name in ("REACHABLE", "TLS", "PROXY", "TIME", "NOTE")]
    for line in lines[1:3]:
        assert line.startswith(f"{plane.url}/")
        assert [line[at - 2 : at] for at in columns] == ["  "] * 5, line  # each cell starts at its column
        assert line[columns[0] :].startswith("true ")
        assert line[columns[2] :].startswith("- "), "direct"
        assert re.match(r"\d+ ms ", line[columns[3] :])
    assert lines[1][columns[4] :] == "HTTP 200 from 127.0.0.1"
    assert lines[-1] == "All 5 endpoints are reachable."


def test_a_connected_machine_checks_its_own_control_plane_and_tenant(plane: ControlPlane, root: Path) -> None:
    connected = azcmagent(
        root,
        "connect",
        *("-s", plane.subscription_id, "-g", plane.resource_group, "-l", plane.location),
        *("-n", f"check-{os.getpid()}", "--access-token", plane.token(plane.onboarding)),
        *plane_flags(plane),
    )
    assert connected.returncode == 0, connected.stdout + connected.stderr
    document = check_json(root)  # no flags: the connection state and the CA copied at connect
    assert document["controlPlaneUrl"] == plane.url
    assert document["caFile"] == str(AgentPaths.under(root).control_plane_ca)
    discovery = f"{plane.url}/{plane.tenant_id}/v2.0/.well-known/openid-configuration"
    assert [row["endpoint"] for row in document["endpoints"]] == [
        f"{plane.url}/healthz",
        discovery,
        f"{plane.url}/metadata/endpoints?api-version=2022-09-01",
        f"{plane.url}/agent/v1/register",
        f"{plane.url}/agent/v1/machines/00000000-0000-0000-0000-000000000000/notifications?generation=0&wait=1",
        f"{plane.url}/agent/v1/machines/00000000-0000-0000-0000-000000000000/guestConfigurationAssignments",
    ]
    assert document["endpoints"][1]["httpStatus"] == 200
    assert document["allReachable"] is True
    assert azcmagent(root, "disconnect", "--force-local-only").returncode == 0


def test_the_configured_control_plane_is_checked(plane: ControlPlane, root: Path) -> None:
    for key, value in (("controlplane.url", plane.url), ("controlplane.cafile", str(plane.ca_file))):
        assert azcmagent(root, "config", "set", key, value).returncode == 0
    document = check_json(root)
    assert document["controlPlaneUrl"] == plane.url
    assert document["caFile"] == str(plane.ca_file)
    assert document["allReachable"] is True


def test_a_closed_port_is_unreachable_and_the_rest_not_tried_with_exit_code_26(root: Path) -> None:
    started = time.monotonic()
    document = check_json(root, "--control-plane-url", "https://127.0.0.1:9")
    assert time.monotonic() - started < 15
    assert document["allReachable"] is False
    first, *rest = document["endpoints"]
    assert first["reachable"] is False and first["httpStatus"] is None and first["tls"] == ""
    assert first["error"].startswith(
        "TCP: 127.0.0.1 port 9: Connection refused; check that the control plane"
    )
    assert len(rest) == 4
    for row in rest:
        assert row["reachable"] is False
        assert row["error"] == "not tried: the connection to 127.0.0.1:9 failed at TCP (see above)"


def test_the_text_names_the_failure_and_counts_the_unreachable(root: Path) -> None:
    result = azcmagent(root, "check", "--control-plane-url", "https://127.0.0.1:9")
    assert result.returncode == 26, "AZCM0026: an endpoint is not reachable"
    lines = result.stdout.splitlines()
    assert "false" in lines[1] and "Connection refused" in lines[1]
    assert lines[-1] == "5 of 5 endpoints are not reachable."


def test_a_wrong_ca_fails_the_tls_step_and_says_so(plane: ControlPlane, root: Path, tmp_path: Path) -> None:
    other_ca = tmp_path / "other-ca.pem"
    cert, _ = make_certificate("another CA")
    other_ca.write_bytes(cert)
    document = check_json(root, "--control-plane-url", plane.url, "--control-plane-ca", str(other_ca))
    row = document["endpoints"][0]
    assert row["reachable"] is False and row["tls"] == ""
    assert row["error"].startswith("TLS: the server's certificate is not trusted (")
    assert "--control-plane-ca" in row["error"]
    assert document["endpoints"][1]["error"].endswith("failed at TLS (see above)")


def test_a_host_that_does_not_resolve_fails_the_dns_step(root: Path) -> None:
    started = time.monotonic()
    document = check_json(root, "--control-plane-url", "https://no-such-host.invalid:8443")
    assert time.monotonic() - started < 20  # bounded even where the resolver times out
    row = document["endpoints"][0]
    assert row["reachable"] is False and row["address"] == ""
    assert row["error"].startswith("DNS: no-such-host.invalid ")


def test_without_any_control_plane_it_is_azcm0016_naming_config_set(root: Path) -> None:
    result = azcmagent(root, "check")
    assert result.returncode == 16
    assert "'azcmagent config set controlplane.url URL'" in result.stderr


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--control-plane-url", "http://127.0.0.1:9"], "is not of the form https://HOST[:PORT]"),
        (["--control-plane-url", "https://127.0.0.1:9", "--cloud", "Mars"], "--cloud 'Mars' is not one of"),
        (["--control-plane-url", "https://127.0.0.1:9", "-e", "nope"], "invalid choice: 'nope'"),
    ],
)
def test_bad_arguments_are_azcm0023(root: Path, args: list[str], words: str) -> None:
    result = azcmagent(root, "check", *args)
    assert result.returncode == 23, result.stderr
    assert words in result.stderr


def test_the_real_agents_flags_are_accepted(plane: ControlPlane, root: Path) -> None:
    flags = ["--cloud", "azureusgovernment", "-l", "westeurope", "-e", "sql", "--include-all", "-p"]
    document = check_json(root, *plane_flags(plane), *flags)
    assert document["allReachable"] is True
    assert len(document["endpoints"]) == 6  # -e sql adds the extension package service


# --- each step is bounded: servers that stall ---------------------------------------------------


def make_certificate(name: str) -> tuple[bytes, bytes]:
    """A self-signed CA certificate for 127.0.0.1 and its key (PEM)."""
    certificate, key = self_signed(name, days=1, ca=True, ip="127.0.0.1")
    return certificate_pem(certificate), key_pem(key)


Behaviour = Callable[[ssl.SSLSocket, threading.Event], None]


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[Callable[[Behaviour], tuple[int, Path]]]:
    """Start a TLS server on loopback whose connections do ``behaviour``; (port, its CA file)."""
    stop = threading.Event()
    listeners: list[socket.socket] = []

    def start(behaviour: Behaviour) -> tuple[int, Path]:
        cert, key = make_certificate("check test server")
        (tmp_path / "server.pem").write_bytes(cert)
        (tmp_path / "server.key").write_bytes(key)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(tmp_path / "server.pem", tmp_path / "server.key")
        listener = socket.create_server(("127.0.0.1", 0))
        listener.settimeout(0.2)
        listeners.append(listener)

        def serve() -> None:
            while not stop.is_set():
                try:
                    conn, _ = listener.accept()
                except OSError:
                    continue
                try:
                    with context.wrap_socket(conn, server_side=True) as tls:
                        behaviour(tls, stop)
                except OSError:
                    pass

        threading.Thread(target=serve, daemon=True).start()
        return listener.getsockname()[1], tmp_path / "server.pem"

    yield start
    stop.set()
    for listener in listeners:
        listener.close()


def run_check(capsys: pytest.CaptureFixture[str], *args: str) -> dict[str, Any]:
    code = main(["check", "-j", *args])
    out, err = capsys.readouterr()
    document: dict[str, Any] = json.loads(out)
    assert code == (0 if document["allReachable"] else 26), out + err
    return document


@pytest.fixture
def short_steps(root: Path, monkeypatch: pytest.MonkeyPatch) -> float:
    monkeypatch.setenv("AZCMAGENT_ROOT", str(root))
    monkeypatch.setattr(check, "STEP_TIMEOUT", 1.0)
    return 1.0


def test_a_listener_that_never_speaks_tls_times_out_the_handshake(
    capsys: pytest.CaptureFixture[str], short_steps: float
) -> None:
    with socket.create_server(("127.0.0.1", 0)) as silent:  # the kernel accepts; nobody answers
        port = silent.getsockname()[1]
        started = time.monotonic()
        document = run_check(capsys, "--control-plane-url", f"https://127.0.0.1:{port}")
        elapsed = time.monotonic() - started
    assert elapsed < 3 * short_steps
    row = document["endpoints"][0]
    assert row["error"] == "TLS: handshake failed: timed out after 1 s"
    assert document["endpoints"][1]["error"].endswith("failed at TLS (see above)")


def test_an_answer_that_never_ends_is_cut_at_the_step_timeout(
    capsys: pytest.CaptureFixture[str],
    short_steps: float,
    tls_server: Callable[[Behaviour], tuple[int, Path]],
) -> None:
    def drip(tls: ssl.SSLSocket, stop: threading.Event) -> None:
        tls.sendall(b"HTTP/1.1 200 OK\r\n")
        while not stop.wait(0.2):  # a header line every 0.2 s: no single read ever times out
            tls.sendall(b"X-Slow: yes\r\n")

    port, ca = tls_server(drip)
    started = time.monotonic()
    document = run_check(
        capsys, "--control-plane-url", f"https://127.0.0.1:{port}", "--control-plane-ca", str(ca)
    )
    elapsed = time.monotonic() - started
    rows = document["endpoints"]
    assert [row["error"] for row in rows] == ["HTTP: no answer within 1 s"] * 5
    assert rows[0]["tls"] in ("TLSv1.2", "TLSv1.3")
    assert elapsed < 5 * 2 * short_steps + 1  # five probes, each cut at its HTTP step


def test_an_unexpected_status_is_unreachable_with_the_servers_message(
    capsys: pytest.CaptureFixture[str],
    short_steps: float,
    tls_server: Callable[[Behaviour], tuple[int, Path]],
) -> None:
    def not_found(tls: ssl.SSLSocket, stop: threading.Event) -> None:
        request = b""
        while b"\r\n\r\n" not in request:
            chunk = tls.recv(4096)
            if not chunk:
                return
            request += chunk
        body = b'{"error": {"code": "NotFound", "message": "no such route"}}'
        tls.sendall(b"HTTP/1.1 404 Not Found\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % len(body))
        tls.sendall(body)

    port, ca = tls_server(not_found)
    document = run_check(
        capsys, "--control-plane-url", f"https://127.0.0.1:{port}", "--control-plane-ca", str(ca)
    )
    first, _metadata, agent_api, *_ = document["endpoints"]
    assert first["httpStatus"] == 404 and first["reachable"] is False
    assert first["error"] == "HTTP: answered 404, expected 200: no such route"
    assert agent_api["error"].startswith("HTTP: answered 404, expected 401 or 400")
    assert document["allReachable"] is False


def test_extensions_add_the_extension_package_service(plane: ControlPlane, root: Path) -> None:
    for flag in ("all", "sql"):
        rows = check_json(root, *plane_flags(plane), "--extensions", flag)["endpoints"]
        assert rows[-1]["endpoint"] == f"{plane.url}/agent/v1/packageSigningKey"
        assert rows[-1]["purpose"] == "extension packages"
        assert (rows[-1]["reachable"], rows[-1]["httpStatus"]) == (True, 401)
        assert len(rows) == 6
