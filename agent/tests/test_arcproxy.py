"""The Arc proxy's own process (docs/gateway.md; docs/architecture.md, "Footprint"): ``arcproxy``
checks its settings, then replaces itself with the resident that carries tunnels; what the
resident loads is what a machine in gateway mode pays for as long as it runs. The tunnels
themselves through a real gateway are in test_gateway.py."""

from __future__ import annotations

import json
import os
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from arc_agent.arcproxy.resident import GatewayFile, StderrLog
from arc_agent.arcproxy.service import relay
from arc_agent.errors import ErrorCode

HEAVY = (
    "argparse",
    "asyncio",
    "dataclasses",
    "logging",
    "pathlib",
    "http.client",
    "arc_agent.config.settings",
)
"""What the resident must not load: each costs it hundreds of KiB it keeps (the checks are done
before the exec, by the front)."""


def test_the_resident_loads_only_what_carries_tunnels() -> None:
    loaded = subprocess.run(
        [sys.executable, "-c", "import sys, arc_agent.arcproxy.resident; print(' '.join(sys.modules))"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert "arc_agent.arcproxy.service" in loaded
    assert [name for name in HEAVY if name in loaded] == []


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_arcproxy_becomes_the_resident_in_the_same_process(tmp_path: Path) -> None:
    port = _free_port()
    env = {**os.environ, "AZCMAGENT_ROOT": str(tmp_path), "HTTPS_PROXY": "http://user:pw@127.0.0.1:9"}
    log = tmp_path / "arcproxy.out"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "arc_agent.arcproxy.main", "--port", str(port)],
            stdout=output,
            stderr=output,
            env=env,
        )
    try:
        deadline = time.monotonic() + 15
        while "listening" not in log.read_text():
            assert process.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
        assert Path(f"/proc/{process.pid}/comm").read_text().strip() == "arcproxy"
        cmdline = Path(f"/proc/{process.pid}/cmdline").read_bytes().split(b"\0")
        assert b"arc_agent.arcproxy.resident" in cmdline
        assert b"user" not in b" ".join(cmdline) and b"pw" not in b" ".join(
            cmdline
        )  # not on the command line
        text = log.read_text()
        assert "(upstream: http://127.0.0.1:9)" in text and "pw" not in text
        # without a gateway file, a tunnel is refused with the reason, in the agent's log format
        with socket.create_connection(("127.0.0.1", port), timeout=5) as client:
            client.sendall(b"CONNECT example.test:443 HTTP/1.1\r\nHost: example.test:443\r\n\r\n")
            answer = client.recv(4096)
        assert answer.startswith(b"HTTP/1.1 503 "), answer
        assert b"has no Arc gateway" in answer
    finally:
        process.terminate()
        assert process.wait(10) == 0, log.read_text()
    lines = log.read_text().splitlines()
    assert any(
        " WARNING arc_agent: refused a request: the machine has no Arc gateway" in line for line in lines
    )
    assert lines[-1].endswith(" INFO arc_agent: arcproxy stopping")


def test_a_port_in_use_is_an_error_before_anything_runs(tmp_path: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", "arc_agent.arcproxy.main", "--port", str(port)],
            capture_output=True,
            text=True,
            env={**os.environ, "AZCMAGENT_ROOT": str(tmp_path)},
            timeout=30,
        )
    assert done.returncode == ErrorCode.ARC_PROXY_NOT_RUNNING, done.stderr
    assert f"cannot listen on localhost:{port}" in done.stderr


def test_tunnels_asking_at_once_all_get_the_gateway(tmp_path: Path) -> None:
    gateway_file = tmp_path / "gateway.json"
    gateway_file.write_text(
        json.dumps({"id": "/gw", "gatewayId": "g-1", "endpoint": "https://gw.test:8444", "bypass": []})
    )
    log = StderrLog(verbose=False)
    source = GatewayFile(str(gateway_file), str(tmp_path / "no-ca.pem"), log)
    start = threading.Barrier(16)
    seen: list[object] = []

    def ask() -> None:
        start.wait()
        seen.append(source())

    askers = [threading.Thread(target=ask) for _ in range(16)]
    for asker in askers:
        asker.start()
    for asker in askers:
        asker.join(30)
    assert len(seen) == 16 and all(found is not None and found is seen[0] for found in seen)


@pytest.mark.parametrize("args", [[], ["x"], ["999"]])
def test_the_resident_started_by_hand_says_what_starts_it(args: list[str]) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "arc_agent.arcproxy.resident", *args],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == ErrorCode.INVALID_ARGUMENT
    assert done.stderr == (
        "AZCM0023: arcproxy's resident is started by arcproxy, with what it hands over: run arcproxy\n"
    )


def _relayed() -> tuple[socket.socket, socket.socket, threading.Thread]:
    """Two client ends joined by ``relay`` on a thread (as a tunnel's thread runs it)."""
    left, left_inner = socket.socketpair()
    right_inner, right = socket.socketpair()

    def run() -> None:
        try:
            relay(left_inner, right_inner)
        finally:
            left_inner.close()
            right_inner.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return left, right, thread


def _read_all(sock: socket.socket, into: bytearray) -> None:
    while chunk := sock.recv(65536):
        into += chunk


@pytest.mark.parametrize("size", [1, 5 * 1024 * 1024])
def test_the_relay_carries_both_ways_at_once_then_ends(size: int) -> None:
    left, right, thread = _relayed()
    to_right, to_left = os.urandom(size), os.urandom(size)
    got_right, got_left = bytearray(), bytearray()
    readers = [
        threading.Thread(target=_read_all, args=(right, got_right)),
        threading.Thread(target=_read_all, args=(left, got_left)),
    ]
    for reader in readers:
        reader.start()
    # both write everything before either reads it all: a relay that blocked on one way would
    # never finish
    writers = [
        threading.Thread(target=left.sendall, args=(to_right,)),
        threading.Thread(target=right.sendall, args=(to_left,)),
    ]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join(30)
    left.shutdown(socket.SHUT_WR)
    right.shutdown(socket.SHUT_WR)
    for reader in readers:
        reader.join(30)
    thread.join(10)
    assert not thread.is_alive()
    assert bytes(got_right) == to_right and bytes(got_left) == to_left
    left.close()
    right.close()


def test_a_half_closed_plain_tunnel_still_carries_the_answer() -> None:
    left, right, thread = _relayed()
    left.sendall(b"request")
    left.shutdown(socket.SHUT_WR)  # the client has said everything
    request = bytearray()
    _read_all(right, request)  # ... and the far end sees the end of it
    assert bytes(request) == b"request"
    right.sendall(b"answer")
    right.close()
    answer = bytearray()
    _read_all(left, answer)
    assert bytes(answer) == b"answer"
    thread.join(10)
    assert not thread.is_alive()
    left.close()


def test_a_reset_end_ends_the_tunnel() -> None:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        left = socket.create_connection(listener.getsockname())
        left_inner, _ = listener.accept()
    right_inner, right = socket.socketpair()
    thread = threading.Thread(target=relay, args=(left_inner, right_inner), daemon=True)
    thread.start()
    left.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    left.close()  # with a zero linger: a reset, not an end
    thread.join(10)
    assert not thread.is_alive(), "an end that can take nothing more ends the tunnel"
    left_inner.close()
    right_inner.close()
    right.settimeout(5)
    assert right.recv(10) == b""
    right.close()
