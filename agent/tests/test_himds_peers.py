"""himds tells which local user is on the other end of a loopback connection (``peers.py``)."""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path

import pytest

from arc_agent.himds.peers import _netlink_uid, _proc_uid, peer_uid, socket_peer_uid

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="connects as another user: needs root")


def accept_from(user: str, family: int = socket.AF_INET) -> tuple[socket.socket, subprocess.Popen[bytes]]:
    host = "::1" if family == socket.AF_INET6 else "127.0.0.1"
    listener = socket.create_server((host, 0), family=family)
    port = listener.getsockname()[1]
    client = subprocess.Popen(
        ["runuser", "-u", user, "--", "/usr/bin/python3", "-c",
         f"import socket, sys; s = socket.create_connection(({host!r}, {port})); sys.stdin.read()"],
        stdin=subprocess.PIPE,
    )  # fmt: skip
    connection, _ = listener.accept()
    listener.close()
    return connection, client


@pytest.mark.parametrize("family", [socket.AF_INET, socket.AF_INET6])
def test_the_uid_of_the_callers_socket_both_ways(family: int) -> None:
    connection, client = accept_from("nobody", family)
    try:
        peer, server = connection.getpeername()[:2], connection.getsockname()[:2]
        assert socket_peer_uid(connection) == 65534
        assert _netlink_uid(peer, server) == 65534
        assert _proc_uid(peer, server, Path("/proc/net")) == 65534
    finally:
        connection.close()
        client.communicate(b"")
    with socket.create_server(("127.0.0.1", 0)) as listener:
        own = socket.create_connection(listener.getsockname())
        accepted, _ = listener.accept()
        assert socket_peer_uid(accepted) == os.getuid()
        own.close()
        accepted.close()


def test_a_socket_that_is_not_there_is_none() -> None:
    assert peer_uid(("127.0.0.1", 1), ("127.0.0.1", 2)) is None
    assert peer_uid(("not-an-address", 1), ("127.0.0.1", 2)) is None
