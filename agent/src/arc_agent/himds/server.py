"""HTTP glue for himds: an HTTP/1.1 server on loopback, a thread per connection, that answers
with :class:`HimdsApi`.

Not ``http.server``: with ``socketserver``, ``html`` (its entity table) and ``shutil`` behind it,
it cost himds about 1.2 MiB it kept for as long as it ran (docs/architecture.md, "Footprint").
What the local API needs of HTTP is small: a request line, headers (parsed by ``http.client``,
which himds has for its own requests), no request body (a request with one is answered, then the
connection closed), keep-alive between good requests, an idle connection closed after 30 s, and
a JSON error for whatever is malformed.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import logging
import re
import signal
import socket
import threading
from email.utils import formatdate
from http import HTTPStatus

from arc_agent.acceptor import accept_forever
from arc_agent.errors import AzcmError, ErrorCode
from arc_agent.himds.api import HimdsApi, Request, Response, error_response
from arc_agent.himds.peers import socket_peer_uid

TYPE_CHECKING = False
if TYPE_CHECKING:
    from types import FrameType
    from typing import BinaryIO

LOGGER = "arc_agent.himds"
IDLE_TIMEOUT_SECONDS = 30
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE"})
"""What the local API answers (with 405 where a path does not take it); others get 501."""
MAX_REQUEST_LINE = 65536
_VERSION = re.compile(r"HTTP/(\d)\.(\d)")


class _Malformed(Exception):
    """A request that cannot be answered by the API: its status and why."""

    def __init__(self, status: HTTPStatus, message: str) -> None:
        super().__init__(message)
        self.status = status


class HimdsServer:
    """The listener (IPv4 or IPv6 from the bind address) and a thread per connection."""

    def __init__(self, address: tuple[str, int], api: HimdsApi | None) -> None:
        self.api = api
        self.logger = logging.getLogger(LOGGER)
        family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.socket = socket.socket(family, socket.SOCK_STREAM)
        try:
            self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self.socket.bind(address)
            self.socket.listen(128)
        except OSError:
            self.socket.close()
            raise
        self.server_address: tuple[str, int] = self.socket.getsockname()[:2]
        self._wakeup, self._waker = socket.socketpair()
        self._stopping = threading.Event()
        self._stopped = threading.Event()
        self._stopped.set()

    def __enter__(self) -> HimdsServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.server_close()

    def serve_forever(self) -> None:
        """Accept connections until :meth:`shutdown` (no timer: an idle himds does not wake)."""
        self._stopped.clear()
        try:
            accept_forever([self.socket], self._start, self.logger, self._stopping, self._wakeup)
        finally:
            self._stopped.set()

    def _start(self, connection: socket.socket, peer: object) -> None:
        threading.Thread(target=self._serve, args=(connection, peer), daemon=True).start()

    def shutdown(self) -> None:
        """End :meth:`serve_forever` (from another thread) and wait until it has."""
        self._stopping.set()
        with contextlib.suppress(OSError):  # already closed: nothing serves
            self._waker.send(b"\0")
        self._stopped.wait()

    def server_close(self) -> None:
        for sock in (self.socket, self._wakeup, self._waker):
            sock.close()

    # --- one connection -------------------------------------------------------------------------

    def _serve(self, connection: socket.socket, peer: object) -> None:
        try:
            connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            connection.settimeout(IDLE_TIMEOUT_SECONDS)
            with connection.makefile("rb") as reader:
                while self._exchange(connection, reader):
                    pass
        except OSError:
            pass  # the client went away, or was idle for IDLE_TIMEOUT_SECONDS
        except Exception:
            self.logger.exception("error while serving %s", peer)
        finally:
            connection.close()

    def _exchange(self, connection: socket.socket, reader: BinaryIO) -> bool:
        """Read one request and answer it; whether the connection stays open for another."""
        line = reader.readline(MAX_REQUEST_LINE + 1)
        if not line:
            return False  # the client closed it
        try:
            method, target, keep = _request_line(line)
            headers = {name.lower(): value for name, value in _headers(reader).items()}
        except _Malformed as bad:
            self.logger.debug("code %d, message %s", bad.status, bad)
            error = "server_error" if bad.status >= 500 else "invalid_request"
            _write(connection, error_response(bad.status, error, str(bad)), close=True)
            return False
        request = Request(
            method=method, target=target, headers=headers, caller=lambda: socket_peer_uid(connection)
        )
        try:
            assert self.api is not None  # set by serve() before the first request
            response = self.api.handle(request)
        except Exception:
            self.logger.exception("error handling %s %s", method, target)
            response = error_response(HTTPStatus.INTERNAL_SERVER_ERROR, "server_error", "Internal error")
        self.logger.debug("%s %s %d", method, target, response.status)
        # Request bodies are never read, so only a bodiless, successful exchange keeps the
        # connection open for the next request.
        connection_header = headers.get("connection", "").lower()
        keep = (keep and connection_header != "close") or connection_header == "keep-alive"
        has_body = "content-length" in headers or "transfer-encoding" in headers
        close = has_body or response.status != HTTPStatus.OK or not keep
        _write(connection, response, close=close)
        return not close


def _request_line(line: bytes) -> tuple[str, str, bool]:
    """Method, target, and whether the client's HTTP version keeps connections by default."""
    if len(line) > MAX_REQUEST_LINE:
        raise _Malformed(HTTPStatus.REQUEST_URI_TOO_LONG, "Request-URI Too Long")
    text = line.decode("iso-8859-1").rstrip("\r\n")
    words = text.split()
    if len(words) != 3:
        raise _Malformed(HTTPStatus.BAD_REQUEST, f"Bad request syntax ({text[:200]!r})")
    method, target, version = words
    found = _VERSION.fullmatch(version)
    if found is None:
        raise _Malformed(HTTPStatus.BAD_REQUEST, f"Bad request version ({version[:50]!r})")
    if int(found[1]) >= 2:
        raise _Malformed(HTTPStatus.HTTP_VERSION_NOT_SUPPORTED, f"Invalid HTTP version ({version})")
    if method not in METHODS:
        raise _Malformed(HTTPStatus.NOT_IMPLEMENTED, f"Unsupported method ({method[:50]!r})")
    return method, target, (int(found[1]), int(found[2])) >= (1, 1)


def _headers(reader: BinaryIO) -> http.client.HTTPMessage:
    try:
        return http.client.parse_headers(reader)
    except http.client.LineTooLong as exc:
        raise _Malformed(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, f"Line too long: {exc}") from None
    except http.client.HTTPException as exc:
        raise _Malformed(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, f"Too many headers: {exc}") from None


def _write(connection: socket.socket, response: Response, *, close: bool) -> None:
    body = response.body
    payload = body if isinstance(body, bytes) else json.dumps(body).encode("utf-8")
    status = HTTPStatus(response.status)
    lines = [
        f"HTTP/1.1 {status.value} {status.phrase}",
        "Server: himds",
        f"Date: {formatdate(usegmt=True)}",
        "Content-Type: application/json; charset=utf-8",
        f"Content-Length: {len(payload)}",
        *(f"{name}: {value}" for name, value in response.headers.items()),
    ]
    if close:
        lines.append("Connection: close")
    connection.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + payload)


def listen(bind: str, port: int) -> HimdsServer:
    """The bound listener (no API yet): done first, so a port in use fails before anything."""
    try:
        return HimdsServer((bind, port), None)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise AzcmError(
            ErrorCode.INITIALIZATION_FAILED, f"cannot listen on {bind}:{port}: {reason}"
        ) from None


def serve(server: HimdsServer, api: HimdsApi, logger: logging.Logger) -> None:
    """Serve ``api`` on ``server`` until SIGTERM or SIGINT, then return (the caller exits 0).

    The kernel gives a process's signal to any of its threads; Python runs its handlers on the
    main thread only, once that thread runs again. The main thread sits in the accept loop's
    ``poll`` (with no timeout, so that an idle himds does not wake), and a SIGTERM taken by
    another thread (the connection's, in a long-poll) left it there: ``systemctl stop`` then
    waited until systemd killed himds. So the signal is read from Python's wakeup file
    (``signal.set_wakeup_fd``), which the interpreter writes from whichever thread took it, by
    a thread of our own that stops the server at once.
    """
    server.api = api
    stopping = threading.Event()

    def watch(wakeup: socket.socket) -> None:
        while not stopping.is_set():
            try:
                received = wakeup.recv(64)
            except OSError:
                return
            if not received:
                return
            for signum in received:
                if signum in STOP_SIGNALS:
                    stopping.set()
                    logger.info("received %s, stopping", signal.Signals(signum).name)
                    server.shutdown()
                    return

    def noted(signum: int, frame: FrameType | None) -> None:
        """A Python handler, so that the interpreter writes the signal to the wakeup file
        (the default action would end himds at once); ``watch`` acts on it."""

    wakeup, wakeup_writer = socket.socketpair()
    wakeup_writer.setblocking(False)
    with server, wakeup, wakeup_writer:
        previous = {sig: signal.signal(sig, noted) for sig in STOP_SIGNALS}
        previous_fd = signal.set_wakeup_fd(wakeup_writer.fileno(), warn_on_full_buffer=False)
        threading.Thread(target=watch, args=(wakeup,), name="himds-signals", daemon=True).start()
        try:
            logger.info("himds listening on http://%s:%d", *server.server_address[:2])
            server.serve_forever()
        finally:
            signal.set_wakeup_fd(previous_fd)
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            api.close()
    logger.info("himds stopped")
