"""The agent's one HTTPS client: ``abort()`` from another thread ends a call at once and for good
(himds closes its connection that way on stop and on reload; a call that reconnected after the
abort used to hold a stop for a whole long-poll)."""

from __future__ import annotations

import http.server
import json
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from certificates import certificate_pem, key_pem, self_signed

from arc_agent.cpclient.onboarding import with_endpoints
from arc_agent.cpclient.transport import ControlPlaneUnreachable, HttpsClient
from arc_agent.errors import AzcmError, ErrorCode


class SilentServer:
    """A TLS server on 127.0.0.1 that reads requests and never answers (a long-poll that
    does not end); it counts the connections it accepted."""

    def __init__(self, tmp_path: Path) -> None:
        certificate, key = self_signed("127.0.0.1", ip="127.0.0.1")
        (tmp_path / "cert.pem").write_bytes(certificate_pem(certificate))
        (tmp_path / "key.pem").write_bytes(key_pem(key))
        self.ca = tmp_path / "cert.pem"
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.accepted = 0
        self.held: list[socket.socket] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                raw, _ = self.listener.accept()
            except OSError:
                return
            self.accepted += 1
            try:
                conn = self.context.wrap_socket(raw, server_side=True)
                conn.recv(65536)
            except OSError:
                continue
            self.held.append(conn)

    def close(self) -> None:
        self.listener.close()
        for conn in self.held:
            conn.close()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[SilentServer]:
    started = SilentServer(tmp_path)
    yield started
    started.close()


def test_abort_ends_a_blocked_call_at_once_without_a_second_connection(server: SilentServer) -> None:
    client = HttpsClient(f"https://127.0.0.1:{server.port}", server.ca, timeout=30)
    outcome: list[BaseException] = []

    def call() -> None:
        try:
            client.json("GET", "/long-poll")
        except BaseException as exc:  # handed to the test's thread
            outcome.append(exc)

    caller = threading.Thread(target=call, daemon=True)
    caller.start()
    deadline = time.monotonic() + 10
    while not server.held and time.monotonic() < deadline:
        time.sleep(0.01)
    assert server.held, "the request never reached the server"
    started = time.monotonic()
    client.abort()
    caller.join(timeout=5)
    assert not caller.is_alive(), "the call was still blocked 5 s after abort()"
    assert time.monotonic() - started < 2
    assert isinstance(outcome[0], ControlPlaneUnreachable)
    assert server.accepted == 1, "an aborted call must not open a new connection"
    with pytest.raises(ControlPlaneUnreachable, match="stopped"):
        client.json("GET", "/again")
    assert server.accepted == 1


def test_abort_before_a_call_stops_it_before_it_connects(server: SilentServer) -> None:
    client = HttpsClient(f"https://127.0.0.1:{server.port}", server.ca, timeout=30)
    client.abort()
    with pytest.raises(ControlPlaneUnreachable, match="stopped"):
        client.json("GET", "/long-poll")
    assert server.accepted == 0


def test_a_certificate_out_of_its_dates_names_the_clock() -> None:
    """A certificate not yet valid (or expired) is most often this machine's clock: the reason
    says so (show's agentErrorDetails, AZCM0026), with the time the machine has."""
    import ssl

    from arc_agent.cpclient.transport import _reason

    for code, said in ((9, "certificate is not yet valid"), (10, "certificate has expired")):
        error = ssl.SSLCertVerificationError(1, said)
        error.verify_code, error.verify_message = code, said
        reason = _reason(error)
        assert reason.startswith(
            f"the server's certificate {said.removeprefix('certificate ')} by this machine's clock"
        )
        assert "check the clock (timedatectl)" in reason
    other = ssl.SSLCertVerificationError(1, "x")
    other.verify_code, other.verify_message = 20, "unable to get local issuer certificate"
    assert "clock" not in _reason(other) and "--control-plane-ca" in _reason(other)


def test_an_endpoints_document_the_agent_cannot_use_is_the_control_planes_fault(tmp_path: Path) -> None:
    """A control plane whose ``/agent/v1/endpoints`` names a service by something that is not an
    https URL fails the connect (AZCM0062, the control plane's fault), not as bad input (AZCM0023)."""
    certificate, key = self_signed("127.0.0.1", ip="127.0.0.1")
    (tmp_path / "cert.pem").write_bytes(certificate_pem(certificate))
    (tmp_path / "key.pem").write_bytes(key_pem(key))

    class Document(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = json.dumps({"identity": "ftp://login.example"}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Document)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    client = HttpsClient(f"https://127.0.0.1:{httpd.server_address[1]}", tmp_path / "cert.pem")
    try:
        with pytest.raises(AzcmError) as raised:
            with_endpoints(client)
        assert raised.value.code == ErrorCode.CONNECT_FAILED, raised.value
        assert "said where its services are in a form this agent cannot use" in raised.value.message
        assert "'ftp://login.example'" in raised.value.message
    finally:
        client.close()
        httpd.shutdown()


def test_a_kept_connection_the_server_closed_is_opened_again_without_a_failure(tmp_path: Path) -> None:
    """The control plane closes a kept-alive connection that stays idle (its keep-alive timeout);
    over TLS 1.3 the next request meets an EOF. The client opens a new connection once, and the
    caller (himds between a long-poll and its heartbeat) sees no failure: a failure would say
    Disconnected and wake extd and gcad for nothing."""
    certificate, key = self_signed("127.0.0.1", ip="127.0.0.1")
    (tmp_path / "cert.pem").write_bytes(certificate_pem(certificate))
    (tmp_path / "key.pem").write_bytes(key_pem(key))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")
    listener = socket.create_server(("127.0.0.1", 0))
    accepted: list[int] = []

    def serve() -> None:
        while True:
            try:
                raw, _ = listener.accept()
            except OSError:
                return
            accepted.append(1)
            try:
                conn = context.wrap_socket(raw, server_side=True)
                conn.recv(65536)
                body = b'{"ok": true}'
                head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
                conn.sendall(head % len(body) + body)
                time.sleep(0.2)
                conn.shutdown(socket.SHUT_RDWR)  # idle: closed without a TLS close_notify
                conn.close()
            except OSError:
                continue

    threading.Thread(target=serve, daemon=True).start()
    client = HttpsClient(f"https://127.0.0.1:{listener.getsockname()[1]}", tmp_path / "cert.pem")
    try:
        assert client.json("GET", "/one").status == 200
        time.sleep(0.5)
        # a POST (a heartbeat): its head and body are two writes, and the second meets the reset
        assert client.json("POST", "/two", {"hostId": "x" * 2000}).status == 200
        assert len(accepted) == 2
    finally:
        client.close()
        listener.close()
