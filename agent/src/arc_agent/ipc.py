"""The CLI ↔ himds channel: a unix socket, ``/var/opt/azcmagent/socks/himds.sock``.

(docs/reference/azcmagent.md: the CLI talks to himds over this socket; the protocol is not public, so this one
is ours.) One request per connection: a JSON object on one line, answered by one JSON object on
one line. Requests: ``{"op": "reload"}`` (the connection state changed: connect, disconnect),
``{"op": "status"}`` (what himds knows now). The socket is created by himds with mode 0600: only
its own user and root may talk to it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

MAX_REQUEST_BYTES = 4096
CLIENT_TIMEOUT = 5.0

Handler = Callable[[Mapping[str, Any]], Mapping[str, Any]]


def ask(path: Path, request: Mapping[str, Any], timeout: float = CLIENT_TIMEOUT) -> dict[str, Any] | None:
    """himds's answer, or None when himds is not there (not running, not installed)."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(str(path))
            sock.sendall(json.dumps(request).encode() + b"\n")
            data = b""
            while not data.endswith(b"\n") and len(data) < 1024 * 1024:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                data += chunk
    except OSError:
        return None
    try:
        answer = json.loads(data)
    except ValueError:
        return None
    return answer if isinstance(answer, dict) else None


class IpcServer:
    """Serves the socket on one daemon thread; each request is handled in turn (they are rare)."""

    def __init__(self, path: Path, handler: Handler, logger: logging.Logger) -> None:
        self._path = path
        self._handler = handler
        self._logger = logger
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            self._path.unlink()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old_umask = os.umask(0o177)  # the socket is born 0600
        try:
            sock.bind(str(self._path))
        finally:
            os.umask(old_umask)
        sock.listen(16)
        self._sock = sock
        self._thread = threading.Thread(target=self._serve, name="himds-ipc", daemon=True)
        self._thread.start()

    def close(self) -> None:
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.shutdown(socket.SHUT_RDWR)
            self._sock.close()
            self._sock = None
        with contextlib.suppress(FileNotFoundError):
            self._path.unlink()

    def _serve(self) -> None:
        while self._sock is not None:
            try:
                connection, _ = self._sock.accept()
            except OSError:
                return
            with connection:
                connection.settimeout(CLIENT_TIMEOUT)
                self._answer(connection)

    def _answer(self, connection: socket.socket) -> None:
        data = b""
        try:
            while not data.endswith(b"\n") and len(data) <= MAX_REQUEST_BYTES:
                chunk = connection.recv(MAX_REQUEST_BYTES)
                if not chunk:
                    break
                data += chunk
            try:
                request = json.loads(data)
            except ValueError:
                request = None
            if not isinstance(request, dict):
                answer: Mapping[str, Any] = {"error": "send one JSON object on one line"}
            else:
                try:
                    answer = self._handler(request)
                except Exception as exc:  # a bad request must not stop the channel
                    self._logger.exception("himds: IPC request %r failed", request.get("op"))
                    answer = {"error": f"{exc.__class__.__name__}: {exc}"}
            connection.sendall(json.dumps(answer).encode() + b"\n")
        except OSError as exc:
            self._logger.debug("himds: IPC client went away: %s", exc)
