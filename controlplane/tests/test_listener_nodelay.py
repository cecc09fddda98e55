"""The listening socket: connections accepted by asyncio get TCP_NODELAY.

Without it, every TLS response of the server waits for the client's delayed ACK (~40 ms), which
would cap each agent connection at about 25 requests per second.
"""

from __future__ import annotations

import asyncio
import socket

from conftest import free_port

from arc_controlplane.server.serve import open_listener


def test_the_listener_is_tcp_so_accepted_connections_get_nodelay() -> None:
    listener = open_listener("127.0.0.1", free_port())
    assert listener.proto == socket.IPPROTO_TCP

    async def scenario() -> int:
        accepted: asyncio.Future[int] = asyncio.get_running_loop().create_future()

        def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            sock = writer.get_extra_info("socket")
            accepted.set_result(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
            writer.close()

        server = await asyncio.start_server(on_connect, sock=listener)
        async with server:
            _, writer = await asyncio.open_connection("127.0.0.1", listener.getsockname()[1])
            nodelay = await asyncio.wait_for(accepted, 5)
            writer.close()
            return nodelay

    assert asyncio.run(scenario()) != 0
