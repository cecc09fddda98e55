"""The Arc proxy's I/O (docs/gateway.md): the listener on localhost:40343, the connections to the
gateway (through an enterprise proxy when one is set), and the bytes copied both ways. The
decisions are in :mod:`arc_agent.arcproxy.core`.

The Arc proxy is resident for as long as the machine is in gateway mode, so what it costs idle
counts against the agent's footprint (docs/architecture.md, "Footprint"): it imports nothing it
does not use. One thread per tunnel (a machine has a handful: himds's long-poll and requests,
extd's, gcad's, the extension handlers'): blocking sockets with timeouts while the tunnel is
opened, then a poll loop that copies both ways. (``asyncio`` alone would cost more memory than
the Arc proxy's own code.)
"""

from __future__ import annotations

import select
import socket
import ssl
import threading
import time

from arc_agent.acceptor import accept_forever
from arc_agent.arcproxy.core import (
    GATEWAY_HEADER,
    LISTEN_PORT,
    MAX_HEAD,
    Refusal,
    connect_head,
    route,
    status_of,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Protocol

    from arc_agent.arcproxy.core import GatewaySettings, Route
    from arc_agent.cpclient.proxy import Proxy

    GatewaySource = Callable[[], "tuple[GatewaySettings, ssl.SSLContext] | None"]
    """The machine's gateway and the TLS context its certificate is checked with, or None."""
    UpstreamProxy = Callable[[str], "Proxy | None"]
    """The enterprise proxy (or None) for a connection to a host."""

    class Log(Protocol):
        """What the Arc proxy logs with (``resident.StderrLog``, or a ``logging.Logger``)."""

        def info(self, message: str, *args: object) -> None: ...
        def warning(self, message: str, *args: object) -> None: ...


HEAD_TIMEOUT_SECONDS = 10.0
CONNECT_TIMEOUT_SECONDS = 15.0
CHUNK = 65536
MAX_TUNNELS = 256
"""Tunnels open at once; a client beyond them gets 503 (a machine needs a handful)."""
LOOPBACK = ("127.0.0.1", "::1")
_BLOCKED = (BlockingIOError, InterruptedError, ssl.SSLWantReadError, ssl.SSLWantWriteError)


class TunnelFailed(Exception):
    """A tunnel could not be opened; ``refusal`` is what the client gets."""

    def __init__(self, refusal: Refusal) -> None:
        super().__init__(refusal.reason)
        self.refusal = refusal


class HeadError(OSError):
    """A request or answer head that did not come whole in time; the message says why."""


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


def read_head(sock: socket.socket, timeout: float, *, exact: bool = False) -> tuple[bytes, bytes]:
    """The head on ``sock`` (through its empty line) and what came after it, within ``timeout``
    seconds in all. ``exact`` reads a byte at a time so that nothing after the head is taken
    (an enterprise proxy's answer, after which the socket carries TLS). HeadError when the head
    is too long, too slow, or the peer closes first."""
    deadline = time.monotonic() + timeout
    data = b""
    while (end := data.find(b"\r\n\r\n")) < 0:
        if len(data) > MAX_HEAD:
            raise HeadError("the head is too long")
        left = deadline - time.monotonic()
        if left <= 0:
            raise HeadError("the head did not come in time")
        sock.settimeout(left)
        try:
            chunk = sock.recv(1 if exact else 4096)
        except socket.timeout:
            raise HeadError("the head did not come in time") from None
        if not chunk:
            raise HeadError("the connection was closed before the end of the head")
        data += chunk
    return data[: end + 4], data[end + 4 :]


class ArcProxy:
    def __init__(self, gateway: GatewaySource, upstream: UpstreamProxy, log: Log) -> None:
        self._gateway = gateway
        self._upstream = upstream
        self._log = log
        self._lock = threading.Lock()
        self._open_tunnels = 0
        self.tunnels = 0
        """Tunnels opened since start."""

    def serve(self, sockets: list[socket.socket]) -> None:
        """Accept clients on ``sockets`` until a signal handler raises; each client in a thread."""
        accept_forever(sockets, self._admit, self._log, threading.Event())

    def _admit(self, client: socket.socket, peer: object) -> None:
        with self._lock:
            admitted = self._open_tunnels < MAX_TUNNELS
            self._open_tunnels += admitted
        if not admitted:
            self._refuse(client, Refusal(503, f"the Arc proxy carries {MAX_TUNNELS} tunnels at most"))
            return
        threading.Thread(target=self._client, args=(client,), daemon=True).start()

    def _refuse(self, client: socket.socket, refusal: Refusal) -> None:
        client.settimeout(1)
        try:
            client.sendall(refusal.encode())
        except OSError:
            pass
        finally:
            client.close()

    def _client(self, client: socket.socket) -> None:
        try:
            self._serve(client)
        except (OSError, ssl.SSLError):
            pass  # the client or the far end went away
        finally:
            client.close()
            with self._lock:
                self._open_tunnels -= 1

    def _serve(self, client: socket.socket) -> None:
        try:
            head, early = read_head(client, HEAD_TIMEOUT_SECONDS)
        except HeadError as exc:
            client.sendall(Refusal(400, f"the request head did not come whole: {exc}").encode())
            return
        current = self._gateway()
        gateway, context = current if current is not None else (None, None)
        decided = route(head, gateway)
        if isinstance(decided, Refusal):
            self._log.warning("refused a request: %s", decided.reason)
            client.sendall(decided.encode())
            return
        assert gateway is not None and context is not None
        try:
            upstream, late = self._open(decided, gateway, context)
        except TunnelFailed as failed:
            way = "through the gateway" if decided.via_gateway else "direct"
            self._log.warning("tunnel to %s (%s) refused: %s", decided.authority, way, failed.refusal.reason)
            client.sendall(failed.refusal.encode())
            return
        with self._lock:
            self.tunnels += 1
        self._log.info(
            "tunnel to %s %s",
            decided.authority,
            f"via {gateway.endpoint}" if decided.via_gateway else "direct",
        )
        try:
            client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
            relay(client, upstream, to_a=late, to_b=early)
        finally:
            upstream.close()

    def _open(
        self, decided: Route, gateway: GatewaySettings, context: ssl.SSLContext
    ) -> tuple[socket.socket, bytes]:
        """A connection carrying the tunnel (and what came on it after the gateway's answer):
        through the gateway (its TLS session, CONNECT in it) or straight to the host; through the
        enterprise proxy first when one is set."""
        host, port = (gateway.host, gateway.port) if decided.via_gateway else (decided.host, decided.port)
        proxy = self._upstream(host)
        what = f"the Arc gateway {gateway.endpoint}" if decided.via_gateway else decided.authority
        try:
            if proxy is None:
                sock = socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_SECONDS)
            else:
                sock = self._tunnel_through(proxy, host, port, what)
            if not decided.via_gateway:
                sock.settimeout(None)
                return sock, b""
            try:
                sock.settimeout(CONNECT_TIMEOUT_SECONDS)
                sock = context.wrap_socket(sock, server_hostname=host)
                sock.sendall(connect_head(decided.authority, {GATEWAY_HEADER: gateway.gateway_id}))
                head, late = read_head(sock, CONNECT_TIMEOUT_SECONDS)
            except BaseException:
                sock.close()
                raise
        except TunnelFailed:
            raise
        except (OSError, ssl.SSLError) as exc:
            reason = str(exc) or type(exc).__name__
            via = f" through the proxy {proxy.display}" if proxy else ""
            raise TunnelFailed(Refusal(502, f"cannot reach {what}{via}: {reason}")) from None
        status, reason = status_of(head)
        if status != 200:
            sock.close()
            refused = f"the Arc gateway refused {decided.authority}: {reason}"
            raise TunnelFailed(Refusal(status or 502, refused))
        sock.settimeout(None)
        return sock, late

    def _tunnel_through(self, proxy: Proxy, host: str, port: int, what: str) -> socket.socket:
        """A socket on which the enterprise proxy has opened a tunnel to ``host:port``."""
        sock = socket.create_connection((proxy.host, proxy.port), timeout=CONNECT_TIMEOUT_SECONDS)
        try:
            authority = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
            extra = {"Proxy-Authorization": proxy.authorization} if proxy.authorization else {}
            sock.sendall(connect_head(authority, extra))
            # the answer to CONNECT is a head only: what follows is the tunnel's, not ours to read
            head, _ = read_head(sock, CONNECT_TIMEOUT_SECONDS, exact=True)
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


class _End:
    """One side of a tunnel: its socket, the bytes waiting to be written to it, and whether it
    still sends (``reading``) and still takes bytes (``writable``)."""

    __slots__ = ("out", "reading", "sock", "tls", "wants", "writable")

    def __init__(self, sock: socket.socket, out: bytes) -> None:
        self.sock = sock
        self.out = bytearray(out)
        self.reading = True
        self.writable = True
        self.tls = isinstance(sock, ssl.SSLSocket)
        self.wants = 0
        """What its TLS layer waits for before the last call can go on (POLLIN, POLLOUT)."""


def relay(a: socket.socket, b: socket.socket, *, to_a: bytes = b"", to_b: bytes = b"") -> None:
    """Copy bytes between ``a`` and ``b`` (plain or TLS sockets) until both have ended, starting
    with ``to_a`` / ``to_b`` already read. An end that finishes sending has its peer's writing
    side shut down; when either is TLS (the gateway's session), the tunnel ends with the first
    end that finishes, since a TLS session cannot be half closed. An error ends it."""
    a_end, b_end = ends = (_End(a, to_a), _End(b, to_b))
    for end in ends:
        end.sock.setblocking(False)
    poller = select.poll()
    masks = {end.sock.fileno(): 0 for end in ends}
    while True:
        moved = False
        for source, target in ((ends[0], ends[1]), (ends[1], ends[0])):
            moved |= _fill(source, target)
            moved |= _flush(target)
            if not source.reading and not target.out and target.writable:
                if target.tls or source.tls:  # the TLS session inside ended with its carrier
                    return
                target.writable = False
                try:
                    target.sock.shutdown(socket.SHUT_WR)
                except OSError:
                    return
        if not any(end.reading or end.out for end in ends):
            return  # both have ended, everything delivered
        if any(
            not end.writable and (end.out or peer.reading) for end, peer in ((a_end, b_end), (b_end, a_end))
        ):
            return  # bytes (or bytes to come) for an end that takes no more
        if moved:
            continue
        for end, peer in ((ends[0], ends[1]), (ends[1], ends[0])):
            mask = end.wants
            if end.reading and len(peer.out) < CHUNK:
                mask |= select.POLLIN
            if end.out:
                mask |= select.POLLOUT
            fd = end.sock.fileno()
            if mask != masks[fd]:
                if masks[fd]:
                    poller.unregister(fd)
                if mask:
                    poller.register(fd, mask)
                masks[fd] = mask
        if not any(masks.values()):
            return
        poller.poll()


def _fill(source: _End, target: _End) -> bool:
    """Read what ``source`` has (TLS may hold more than the socket shows) into ``target.out``."""
    moved = False
    while source.reading and len(target.out) < CHUNK:
        try:
            data = source.sock.recv(CHUNK)
        except ssl.SSLWantWriteError:
            source.wants = select.POLLOUT
            break
        except _BLOCKED:
            source.wants = 0
            break
        except OSError:  # reset, or a TLS error: nothing more comes from it
            data = b""
            source.writable = False
        source.wants = 0
        moved = True
        if not data:
            source.reading = False
            break
        target.out += data
    return moved


def _flush(target: _End) -> bool:
    """Write what waits for ``target``; an error makes it take nothing more."""
    if not target.out or not target.writable:
        return False
    try:
        sent = target.sock.send(target.out[:CHUNK])
    except ssl.SSLWantReadError:
        target.wants = select.POLLIN
        return False
    except _BLOCKED:
        return False
    except OSError:
        target.writable = False
        target.reading = False
        target.out.clear()
        return True
    target.wants = 0
    del target.out[:sent]
    return sent > 0
