"""The Arc gateway service: a TLS forward proxy beside the API (``serve --gateway-port``).

The Arc proxy of a machine linked to a gateway opens TLS to this listener (the control plane's
certificate) and sends, in that session, ``CONNECT host:port`` with the header
``Arc-Gateway-Id: <gatewayId>``; the agent's own TLS then runs inside the tunnel, end to end,
as through any proxy. Each request is decided by :func:`arc_controlplane.machines.gateways.admit`
(the pure part); this module reads the request, looks the gateway up, answers, and copies bytes
both ways. A refusal is an HTTP answer whose status and ``X-Arc-Gateway-Error`` header name the
reason (docs/gateway.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
from collections.abc import Iterable
from http import HTTPStatus

from sqlalchemy import select

from arc_controlplane.db.tables import Gateway
from arc_controlplane.http.context import AppContext
from arc_controlplane.machines.gateways import Admission, admit

LOG = logging.getLogger(__name__)
MAX_HEAD = 8192
HEAD_TIMEOUT_SECONDS = 10.0
CONNECT_TIMEOUT_SECONDS = 10.0
CHUNK = 65536
GATEWAY_HEADER = "arc-gateway-id"


def upstream_of(bind: str, port: int) -> tuple[str, int]:
    """Where the gateway reaches the API listener (loopback when it listens on every address)."""
    if bind in ("0.0.0.0", ""):  # noqa: S104 - naming it, not binding
        return "127.0.0.1", port
    if bind == "::":
        return "::1", port
    return bind, port


class GatewayService:
    """Accepts tunnel requests and carries the admitted ones to the API listener."""

    def __init__(
        self,
        ctx: AppContext,
        endpoints: Iterable[tuple[str, int]],
        upstream: tuple[str, int],
        max_tunnels: int,
    ) -> None:
        self._ctx = ctx
        self.endpoints = frozenset((host.lower(), port) for host, port in endpoints)
        self._upstream = upstream
        self._max_tunnels = max_tunnels
        self._tunnels: set[asyncio.Task[None]] = set()
        self._server: asyncio.Server | None = None

    async def start(self, sock: socket.socket, tls: ssl.SSLContext, handshake_timeout: float) -> None:
        self._server = await asyncio.start_server(
            self._accept, sock=sock, ssl=tls, ssl_handshake_timeout=handshake_timeout, limit=CHUNK
        )

    async def close(self) -> None:
        """Stop accepting and end the open tunnels (the agents reconnect to the next server)."""
        if self._server is not None:
            self._server.close()
        for task in list(self._tunnels):
            task.cancel()
        if self._tunnels:
            await asyncio.gather(*self._tunnels, return_exceptions=True)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tunnels.add(task)
        try:
            await self._serve(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError, OSError):
            pass
        finally:
            self._tunnels.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        who = peer[0] if isinstance(peer, tuple) else "?"
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), HEAD_TIMEOUT_SECONDS)
        except (TimeoutError, asyncio.LimitOverrunError):
            await _answer(
                writer, Admission(HTTPStatus.BAD_REQUEST, "the request head is too long or too slow")
            )
            return
        if len(head) > MAX_HEAD:
            await _answer(writer, Admission(HTTPStatus.BAD_REQUEST, "the request head is too long"))
            return
        method, authority, named = _parse_head(head)
        if len(self._tunnels) > self._max_tunnels:
            admission = Admission(
                HTTPStatus.SERVICE_UNAVAILABLE, "the gateway carries as many tunnels as it can"
            )
        else:
            gateway = await asyncio.to_thread(self._find, named) if named else None
            admission = admit(method, authority, named, gateway, self.endpoints, self._upstream)
        if not admission.allowed or admission.target is None:
            LOG.warning(
                "gateway: refused %s %s from %s: %s", method[:16], authority[:300], who, admission.reason
            )
            await _answer(writer, admission)
            return
        try:
            up_reader, up_writer = await asyncio.wait_for(
                asyncio.open_connection(*admission.target, limit=CHUNK), CONNECT_TIMEOUT_SECONDS
            )
        except (OSError, TimeoutError) as exc:
            await _answer(
                writer, Admission(HTTPStatus.BAD_GATEWAY, f"the control plane does not answer: {exc}")
            )
            return
        writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        await writer.drain()
        try:
            await asyncio.gather(_copy(reader, up_writer), _copy(up_reader, writer))
        finally:
            up_writer.close()

    def _find(self, gateway_id: str) -> Gateway | None:
        with self._ctx.db.session() as session:
            found = session.scalars(select(Gateway).where(Gateway.gateway_id == gateway_id.lower())).first()
            if found is not None:
                session.expunge(found)
            return found


def _parse_head(head: bytes) -> tuple[str, str, str | None]:
    """(method, target, Arc-Gateway-Id) of a request head; empty strings when unreadable."""
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        return "", "", None
    named = None
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep and name.strip().lower() == GATEWAY_HEADER:
            named = value.strip()
    return parts[0], parts[1], named


async def _answer(writer: asyncio.StreamWriter, admission: Admission) -> None:
    body = f"{admission.reason}\n".encode()
    reason = admission.reason.encode("ascii", "replace")[:500]
    writer.write(
        f"HTTP/1.1 {admission.status.value} {admission.status.phrase}\r\n".encode()
        + b"Content-Type: text/plain; charset=utf-8\r\nConnection: close\r\n"
        + b"X-Arc-Gateway-Error: "
        + reason
        + f"\r\nContent-Length: {len(body)}\r\n\r\n".encode()
        + body
    )
    with contextlib.suppress(ConnectionError, OSError):
        await writer.drain()


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
