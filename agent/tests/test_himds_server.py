from __future__ import annotations

import http.client
import json
import os
import re
import signal
import socket
import subprocess
from typing import Any

import pytest
from conftest import Himds, free_port, run_module, start_himds

from arc_agent import __version__

HIMDS = "arc_agent.himds.main"
STATUS = "/agentstatus?api-version=2019-08-15"


def request(
    port: int, target: str, headers: dict[str, str], method: str = "GET"
) -> tuple[int, dict[str, Any], http.client.HTTPResponse]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request(method, target, headers=headers)
        response = conn.getresponse()
        body = json.loads(response.read())
        return response.status, body, response
    finally:
        conn.close()


def test_version() -> None:
    result = run_module(HIMDS, "--version")
    assert result.returncode == 0
    assert result.stdout == f"himds version {__version__}\n"


def test_agent_status(himds: Himds) -> None:
    status, body, response = request(himds.port, STATUS, {"Metadata": "true"})
    assert status == 200
    assert body == {"status": "Disconnected", "lastHeartBeat": None, "agentVersion": __version__}
    assert response.getheader("Content-Type") == "application/json; charset=utf-8"


def test_connection_is_kept_alive_between_good_requests(himds: Himds) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", himds.port, timeout=5)
    try:
        for _ in range(3):
            conn.request("GET", STATUS, headers={"Metadata": "true"})
            response = conn.getresponse()
            assert response.status == 200
            assert json.loads(response.read())["status"] == "Disconnected"
    finally:
        conn.close()


def test_missing_metadata_header(himds: Himds) -> None:
    status, body, _ = request(himds.port, STATUS, {})
    assert status == 400
    assert body["error"] == "invalid_request"


def test_forwarded_request_refused(himds: Himds) -> None:
    status, body, _ = request(himds.port, STATUS, {"Metadata": "true", "X-Forwarded-For": "192.0.2.7"})
    assert status == 400
    assert "X-Forwarded-For" in body["error_description"]


@pytest.mark.parametrize("target", ["/agentstatus", "/agentstatus?api-version=1999-01-01"])
def test_bad_api_version_lists_supported_versions(himds: Himds, target: str) -> None:
    status, body, _ = request(himds.port, target, {"Metadata": "true"})
    assert status == 400
    assert "Supported are 2019-08-15" in body["error_description"]


def test_unknown_path(himds: Himds) -> None:
    status, body, _ = request(himds.port, "/no/such/thing", {"Metadata": "true"})
    assert status == 404
    assert body["error"] == "not_found"


def test_post_is_not_allowed(himds: Himds) -> None:
    status, _, response = request(himds.port, STATUS, {"Metadata": "true"}, method="POST")
    assert status == 405
    assert response.getheader("Allow") == "GET"


def test_malformed_request_gets_a_json_error(himds: Himds) -> None:
    status, body, _ = request(himds.port, STATUS, {"Metadata": "true"}, method="BREW")
    assert status == 501
    assert body["error"] == "server_error"


def exchange(port: int, raw: bytes) -> bytes:
    """What himds sends back for ``raw`` until it closes the connection (or 5 s pass)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(raw)
        received = b""
        try:
            while chunk := sock.recv(65536):
                received += chunk
        except TimeoutError:
            received += b"<still open>"
        return received


def statuses(answer: bytes) -> list[int]:
    return [int(status) for status in re.findall(rb"HTTP/1\.1 (\d{3}) ", answer)]


GOOD = f"GET {STATUS} HTTP/1.1\r\nHost: localhost\r\nMetadata: true\r\n".encode()


def test_requests_sent_together_are_answered_in_order_and_close_is_honoured(himds: Himds) -> None:
    answer = exchange(himds.port, GOOD + b"\r\n" + GOOD + b"Connection: close\r\n\r\n")
    assert statuses(answer) == [200, 200]
    assert answer.count(b"Connection: close") == 1 and answer.endswith(b"}")  # closed after the second


def test_http_1_0_gets_one_answer_then_the_connection_closes(himds: Himds) -> None:
    answer = exchange(himds.port, f"GET {STATUS} HTTP/1.0\r\nMetadata: true\r\n\r\n".encode())
    assert statuses(answer) == [200]
    assert answer.endswith(b"}")


def test_a_request_with_a_body_is_answered_then_the_connection_closes(himds: Himds) -> None:
    answer = exchange(himds.port, GOOD + b"Content-Length: 5\r\n\r\nhello" + GOOD + b"\r\n")
    assert statuses(answer) == [200]
    assert b"Connection: close" in answer


@pytest.mark.parametrize(
    ("raw", "status", "says"),
    [
        (b"GET /" + b"a" * 70000 + b" HTTP/1.1\r\n\r\n", 414, "Request-URI Too Long"),
        (b"GET / HTTP/x\r\n\r\n", 400, "Bad request version"),
        (b"GET / HTTP/2.0\r\n\r\n", 505, "Invalid HTTP version"),
        (b"NONSENSE\r\n\r\n", 400, "Bad request syntax"),
        (GOOD + b"X-Long: " + b"a" * 70000 + b"\r\n\r\n", 431, "Line too long"),
        (GOOD + b"".join(b"X-%d: 1\r\n" % n for n in range(120)) + b"\r\n", 431, "Too many headers"),
    ],
)
def test_malformed_requests_get_a_json_error_and_the_connection_closes(
    himds: Himds, raw: bytes, status: int, says: str
) -> None:
    answer = exchange(himds.port, raw)
    assert statuses(answer) == [status]
    head, _, body = answer.partition(b"\r\n\r\n")
    assert b"Connection: close" in head
    assert says in json.loads(body)["error_description"]


@pytest.mark.parametrize("address", ["0.0.0.0", "192.0.2.1", "::", "localhost"])
def test_non_loopback_bind_is_refused(address: str) -> None:
    result = run_module(HIMDS, "--bind", address, "--port", str(free_port()))
    assert result.returncode == 23
    assert result.stderr.startswith("AZCM0023: argument --bind: ")
    assert len(result.stderr.splitlines()) == 1


def test_bad_port_is_refused() -> None:
    result = run_module(HIMDS, "--port", "70000")
    assert result.returncode == 23
    assert result.stderr == "AZCM0023: argument --port: 70000 is not a port number (1-65535)\n"


def test_port_in_use_is_a_one_line_error(himds: Himds) -> None:
    env = {**os.environ, "AZCMAGENT_ROOT": str(himds.root / "second")}
    result = run_module(HIMDS, "--port", str(himds.port), env=env)
    assert result.returncode == 6
    assert result.stderr.startswith(f"AZCM0006: cannot listen on 127.0.0.1:{himds.port}: ")
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signal_stops_cleanly(signum: signal.Signals) -> None:
    server = start_himds()
    try:
        server.process.send_signal(signum)
        _, err = server.process.communicate(timeout=5)
        assert server.process.returncode == 0, err
        assert "Traceback" not in err
        assert "himds stopped" in err
    except subprocess.TimeoutExpired:
        pytest.fail("himds did not stop within 5 s")
    finally:
        server.stop()
