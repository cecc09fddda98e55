"""HTTP glue for himds: a threading HTTP server on loopback that answers with :class:`HimdsApi`."""

from __future__ import annotations

import contextlib
import json
import logging
import signal
import socket
import socketserver
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType
from typing import Any

from arc_agent.errors import AzcmError, ErrorCode
from arc_agent.himds.api import HimdsApi, Request, Response, error_response
from arc_agent.himds.peers import socket_peer_uid

LOGGER = "arc_agent.himds"
IDLE_TIMEOUT_SECONDS = 30
IDLE_POLL_SECONDS = 3600.0
"""How often the accept loop wakes on its own; ``stop`` wakes it at once with a connection."""
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class HimdsServer(ThreadingHTTPServer):
    """One thread per connection; IPv4 or IPv6 chosen from the bind address."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], api: HimdsApi | None) -> None:
        self.api = api
        self.logger = logging.getLogger(LOGGER)
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        super().__init__(address, HimdsRequestHandler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind would do a reverse DNS lookup (getfqdn) of the bind address.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)

    def handle_error(self, request: Any, client_address: Any) -> None:
        self.logger.exception("error while serving %s", client_address)


class HimdsRequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "himds"
    sys_version = ""
    timeout = IDLE_TIMEOUT_SECONDS
    # Headers and body are separate writes: with Nagle's algorithm the body of a second response
    # on a kept-alive connection waits for the client's delayed ACK (40 ms).
    disable_nagle_algorithm = True

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_PUT(self) -> None:
        self._dispatch()

    def do_PATCH(self) -> None:
        self._dispatch()

    def do_DELETE(self) -> None:
        self._dispatch()

    def _dispatch(self) -> None:
        server = self.server
        assert isinstance(server, HimdsServer)
        headers = {name.lower(): value for name, value in self.headers.items()}
        connection = self.connection
        request = Request(
            method=self.command, target=self.path, headers=headers, caller=lambda: socket_peer_uid(connection)
        )
        try:
            assert server.api is not None  # set by serve() before the first request
            response = server.api.handle(request)
        except Exception:
            server.logger.exception("error handling %s %s", self.command, self.path)
            response = error_response(HTTPStatus.INTERNAL_SERVER_ERROR, "server_error", "Internal error")
        # Request bodies are never read, so only a bodiless, successful exchange keeps the
        # connection open for the next request.
        has_body = "content-length" in headers or "transfer-encoding" in headers
        self._write(response, close=has_body or response.status != HTTPStatus.OK)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """Malformed requests (bad request line, huge headers, ...) also get a JSON error body."""
        status = HTTPStatus(code)
        self.log_error("code %d, message %s", code, message)
        error = "server_error" if code >= 500 else "invalid_request"
        self._write(error_response(status, error, message or status.phrase), close=True)

    def _write(self, response: Response, *, close: bool) -> None:
        body = response.body
        payload = body if isinstance(body, bytes) else json.dumps(body).encode("utf-8")
        self.send_response(response.status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(payload)))
        for name, value in response.headers.items():
            self.send_header(name, value)
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        logging.getLogger(LOGGER).debug("%s %s", self.address_string(), format % args)


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
    ``select`` (for up to an hour, so that an idle himds does not wake), and a SIGTERM taken by
    another thread (the connection's, in a long-poll) left it there: ``systemctl stop`` then
    waited until systemd killed himds. So the signal is read from Python's wakeup file
    (``signal.set_wakeup_fd``), which the interpreter writes from whichever thread took it, by
    a thread of our own that starts the stop at once.
    """
    server.api = api
    stopping = threading.Event()

    def stop(signum: int) -> None:
        if stopping.is_set():
            return
        stopping.set()
        logger.info("received %s, stopping", signal.Signals(signum).name)
        # The loop waits in select() without a timeout (an idle himds must not wake up twice a
        # second): after shutdown() has set its flag, a connection of our own wakes the loop.
        waiter = threading.Thread(target=server.shutdown, daemon=True)
        waiter.start()
        while waiter.is_alive():
            host, port = server.server_address[:2]
            with contextlib.suppress(OSError), socket.create_connection((str(host), int(port)), timeout=1):
                pass
            waiter.join(0.2)

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
                    stop(signum)
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
            server.serve_forever(poll_interval=IDLE_POLL_SECONDS)
        finally:
            signal.set_wakeup_fd(previous_fd)
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            api.close()
    logger.info("himds stopped")
