"""The agent's one HTTPS client: ``abort()`` from another thread ends a call at once and for good
(himds closes its connection that way on stop and on reload; a call that reconnected after the
abort used to hold a stop for a whole long-poll)."""

from __future__ import annotations

import socket
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from certificates import certificate_pem, key_pem, self_signed

from arc_agent.cpclient.transport import ControlPlaneUnreachable, HttpsClient


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
