"""The Arc proxy's I/O (docs/gateway.md): the listener on localhost:40343, the connections to the
gateway (through an enterprise proxy when one is set), and the bytes copied both ways. The
decisions are in :mod:`arc_agent.arcproxy.core`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
from collections.abc import Callable
from typing import Optional

from arc_agent.arcproxy.core import (
    GATEWAY_HEADER,
    LISTEN_PORT,
    MAX_HEAD,
    GatewaySettings,
    Refusal,
    Route,
    connect_head,
    route,
    status_of,
)
from arc_agent.cpclient.proxy import Proxy

HEAD_TIMEOUT_SECONDS = 10.0
CONNECT_TIMEOUT_SECONDS = 15.0
CHUNK = 65536
LOOPBACK = ("127.0.0.1", "::1")

GatewaySource = Callable[[], Optional[tuple[GatewaySettings, ssl.SSLContext]]]
"""The machine's gateway and the TLS context its certificate is checked with, or None."""
UpstreamProxy = Callable[[str], Optional[Proxy]]
"""The enterprise proxy (or None) for a connection to a host."""


class TunnelFailed(Exception):
    """A tunnel could not be opened; ``refusal`` is what the client gets."""

    def __init__(self, refusal: Refusal) -> None:
        super().__init__(refusal.reason)
        self.refusal = refusal


def listeners(port: int = LISTEN_PORT) -> list[socket.socket]:
    """Sockets on the loopback addresses only (IPv6 when the host has it)."""
    found = []
    for address in LOOPBACK:
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        try:
            sock = socket.create_server((address, port), family=family, backlog=512)
        except OSError:
            if family == socket.AF_INET:
                raise
            continue  # no IPv6 loopback here
        found.append(sock)
    return found


class ArcProxy:
    def __init__(self, gateway: GatewaySource, upstream: UpstreamProxy, log: logging.Logger) -> None:
        self._gateway = gateway
        self._upstream = upstream
        self._log = log
        self._servers: list[asyncio.Server] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self.tunnels = 0

    async def start(self, sockets: list[socket.socket]) -> None:
        for sock in sockets:
            self._servers.append(await asyncio.start_server(self._client, sock=sock, limit=CHUNK))

    async def close(self) -> None:
        for server in self._servers:
            server.close()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            await self._serve(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, OSError, ssl.SSLError):
            pass
        finally:
            self._tasks.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), HEAD_TIMEOUT_SECONDS)
        except (asyncio.TimeoutError, asyncio.LimitOverrunError):
            writer.write(Refusal(400, "the request head is too long or too slow").encode())
            return
        if len(head) > MAX_HEAD:
            writer.write(Refusal(400, "the request head is too long").encode())
            return
        current = self._gateway()
        gateway, context = current if current is not None else (None, None)
        decided = route(head, gateway)
        if isinstance(decided, Refusal):
            self._log.warning("refused a request: %s", decided.reason)
            writer.write(decided.encode())
            await writer.drain()
            return
        assert gateway is not None and context is not None
        try:
            up_reader, up_writer = await self._open(decided, gateway, context)
        except TunnelFailed as failed:
            way = "through the gateway" if decided.via_gateway else "direct"
            self._log.warning("tunnel to %s (%s) refused: %s", decided.authority, way, failed.refusal.reason)
            writer.write(failed.refusal.encode())
            await writer.drain()
            return
        self.tunnels += 1
        self._log.info(
            "tunnel to %s %s",
            decided.authority,
            f"via {gateway.endpoint}" if decided.via_gateway else "direct",
        )
        writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        await writer.drain()
        try:
            await asyncio.gather(_copy(reader, up_writer), _copy(up_reader, writer))
        finally:
            up_writer.close()

    async def _open(
        self, decided: Route, gateway: GatewaySettings, context: ssl.SSLContext
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """A connection carrying the tunnel: through the gateway (its TLS session, CONNECT in it)
        or straight to the host; through the enterprise proxy first when one is set. (The TLS
        goes onto a socket the proxy's tunnel is already on: ``start_tls`` of streams needs 3.11.)"""
        host, port = (gateway.host, gateway.port) if decided.via_gateway else (decided.host, decided.port)
        proxy = self._upstream(host)
        what = f"the Arc gateway {gateway.endpoint}" if decided.via_gateway else decided.authority
        tls = {"ssl": context, "server_hostname": host} if decided.via_gateway else {}
        try:
            if proxy is None:
                opening = asyncio.open_connection(host, port, limit=CHUNK, **tls)  # type: ignore[arg-type]
            else:
                sock = await asyncio.wait_for(
                    self._tunnel_through(proxy, host, port, what), CONNECT_TIMEOUT_SECONDS
                )
                opening = asyncio.open_connection(sock=sock, limit=CHUNK, **tls)  # type: ignore[arg-type]
            reader, writer = await asyncio.wait_for(opening, CONNECT_TIMEOUT_SECONDS)
            if not decided.via_gateway:
                return reader, writer
            writer.write(connect_head(decided.authority, {GATEWAY_HEADER: gateway.gateway_id}))
            await writer.drain()
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), CONNECT_TIMEOUT_SECONDS)
        except TunnelFailed:
            raise
        except (
            OSError,
            asyncio.TimeoutError,
            ssl.SSLError,
            asyncio.IncompleteReadError,
            asyncio.LimitOverrunError,
        ) as exc:
            reason = str(exc) or type(exc).__name__
            via = f" through the proxy {proxy.display}" if proxy else ""
            raise TunnelFailed(Refusal(502, f"cannot reach {what}{via}: {reason}")) from None
        status, reason = status_of(head)
        if status != 200:
            writer.close()
            raise TunnelFailed(
                Refusal(status or 502, f"the Arc gateway refused {decided.authority}: {reason}")
            )
        return reader, writer

    async def _tunnel_through(self, proxy: Proxy, host: str, port: int, what: str) -> socket.socket:
        """A socket on which the enterprise proxy has opened a tunnel to ``host:port``."""
        loop = asyncio.get_running_loop()
        infos = await loop.getaddrinfo(proxy.host, proxy.port, type=socket.SOCK_STREAM)
        family, kind, number, _, address = infos[0]
        sock = socket.socket(family, kind, number)
        sock.setblocking(False)
        try:
            await loop.sock_connect(sock, address)
            authority = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
            extra = {"Proxy-Authorization": proxy.authorization} if proxy.authorization else {}
            await loop.sock_sendall(sock, connect_head(authority, extra))
            head = b""
            while b"\r\n\r\n" not in head:  # the answer to CONNECT is a head only: nothing after it
                chunk = await loop.sock_recv(sock, 1)
                if not chunk or len(head) > MAX_HEAD:
                    raise OSError("the proxy closed the connection")
                head += chunk
        except BaseException:
            sock.close()
            raise
        status, reason = status_of(head)
        if status != 200:
            sock.close()
            raise TunnelFailed(
                Refusal(502, f"the proxy {proxy.display} refused the tunnel to {what}: {status} {reason}")
            )
        return sock


async def _copy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(CHUNK):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError, ssl.SSLError):
        pass
    finally:
        with contextlib.suppress(ConnectionError, OSError, RuntimeError, ssl.SSLError):
            if writer.can_write_eof():
                writer.write_eof()
            else:
                writer.close()
