"""Connections a client cannot hold (issue 10, finding 2): half-sent headers and bodies used to
never time out, 1,000 idle TLS connections were still held after 120 s, and at the unit's file
limit every new client was refused.

The time limits are checked on a real uvicorn server with the control plane's connection
policy made short (``connections.guarded_protocol``); the defaults, the per-address cap and the
file limit on the real ``arc-controlplane serve``.
"""

from __future__ import annotations

import asyncio
import contextlib
import resource
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn
from conftest import ca_context, free_port, start_server

from arc_controlplane.server.connections import guarded_protocol
from arc_controlplane.settings import ConnectionPolicy

SHORT = ConnectionPolicy(
    handshake_timeout=1, header_timeout=1, body_timeout=2, max_per_address=5, max_total=8
)


async def echo_app(scope, receive, send):  # type: ignore[no-untyped-def]
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if message["type"] == "http.disconnect" or not message.get("more_body"):
            break
    if scope["path"] == "/slow":
        await asyncio.sleep(3)  # longer than every deadline: answering is not the client's fault
    payload = b"ok %d" % len(body)
    await send(
        {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"%d" % len(payload))]}
    )
    await send({"type": "http.response.body", "body": payload})


@pytest.fixture(scope="module")
def short_server() -> Iterator[int]:
    port = free_port()
    config = uvicorn.Config(
        echo_app, host="127.0.0.1", port=port, http=guarded_protocol(SHORT), log_level="error"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    yield port
    server.should_exit = True
    thread.join(10)


def connect(port: int, source: str = "127.0.0.1") -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10, source_address=(source, 0))
    return sock


def read_all(sock: socket.socket) -> bytes:
    data = b""
    with contextlib.suppress(OSError):
        while chunk := sock.recv(65536):
            data += chunk
    return data


def test_a_connection_that_sends_nothing_is_closed(short_server: int) -> None:
    with connect(short_server) as sock:
        started = time.monotonic()
        answer = read_all(sock)
        assert answer.startswith(b"HTTP/1.1 408"), answer
        assert b'"RequestTimeout"' in answer
        assert time.monotonic() - started < 3


def test_half_sent_headers_time_out(short_server: int) -> None:
    with connect(short_server) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")
        time.sleep(0.5)
        sock.sendall(b"X-Trickle: 1\r\n")  # a byte now and then must not keep it open
        answer = read_all(sock)
        assert answer.startswith(b"HTTP/1.1 408"), answer


def test_a_half_sent_body_times_out(short_server: int) -> None:
    with connect(short_server) as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0123456789")
        started = time.monotonic()
        answer = read_all(sock)
        assert answer.startswith(b"HTTP/1.1 408"), answer
        assert 1.5 < time.monotonic() - started < 4


def test_whole_requests_on_a_kept_alive_connection_have_no_deadline_of_ours(short_server: int) -> None:
    with connect(short_server) as sock:
        for _ in range(2):
            sock.sendall(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
            answer = sock.recv(65536)
            assert answer.startswith(b"HTTP/1.1 200"), answer
        sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc")
        assert sock.recv(65536).endswith(b"ok 3")


def test_one_address_cannot_take_every_connection(short_server: int) -> None:
    held = [connect(short_server) for _ in range(SHORT.max_per_address)]
    try:
        time.sleep(0.2)
        with connect(short_server) as refused:
            answer = read_all(refused)
            assert answer.startswith(b"HTTP/1.1 503"), answer
            assert b"retry-after: 5" in answer.lower()
            assert b"from 127.0.0.1" in answer
        with connect(short_server, source="127.0.0.2") as other:  # another client still gets in
            other.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            assert other.recv(65536).startswith(b"HTTP/1.1 200")
    finally:
        for sock in held:
            sock.close()
    time.sleep(0.2)
    with connect(short_server) as again:  # closed connections are counted out
        again.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert again.recv(65536).startswith(b"HTTP/1.1 200")


# --- the real server, default policy ----------------------------------------------------------


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, Path, int]]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 8192), hard))
    server = start_server(
        tmp_path_factory.mktemp("connections") / "data", ["--max-connections-per-address", "1200"]
    )
    try:
        yield server.port, server.ca_file, server.process.pid
    finally:
        server.stop()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def healthy(port: int, ca_file: Path, source: str = "127.0.0.1") -> bool:
    context = ca_context(ca_file)
    with connect(port, source) as raw, context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
        tls.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        return read_all(tls).startswith(b"HTTP/1.1 200")


def test_the_server_raises_its_file_limit(served: tuple[int, Path, int]) -> None:
    limits = Path(f"/proc/{served[2]}/limits").read_text()
    line = next(line for line in limits.splitlines() if line.startswith("Max open files"))
    soft, hard = line.split()[3:5]
    assert soft == hard, line


def test_a_thousand_idle_tls_connections_are_gone_within_the_deadlines(served: tuple[int, Path, int]) -> None:
    port, ca_file, _ = served
    context = ca_context(ca_file)
    idle: list[socket.socket] = []
    try:
        for index in range(1000):
            raw = connect(port)
            if index % 2:  # half of them finish the handshake, half never start it
                idle.append(context.wrap_socket(raw, server_hostname="127.0.0.1"))
            else:
                idle.append(raw)
        assert healthy(port, ca_file, "127.0.0.2"), "a client was refused while 1,000 connections were idle"
        deadline = time.monotonic() + 25
        for sock in idle:
            sock.settimeout(max(0.1, deadline - time.monotonic()))
            with contextlib.suppress(ssl.SSLError, OSError):
                while sock.recv(4096):
                    pass
        assert time.monotonic() < deadline, (
            "idle connections were still open after the handshake and header deadlines"
        )
    finally:
        for sock in idle:
            sock.close()
    assert healthy(port, ca_file)
