"""The accept loop of a service that answers each connection on a thread of its own (himds's
local API, the Arc proxy's tunnels).

It sleeps in ``poll`` with no timeout, so an idle service does not wake; a connection on the
``wakeup`` socket (when given) ends the loop once ``stopping`` is set; a failed accept (out of
descriptors) is logged and tried again a little later, while the client waits in the backlog.
Light on purpose: the Arc proxy's resident imports it (docs/architecture.md, "Footprint").
"""

from __future__ import annotations

import select
import socket

TYPE_CHECKING = False
if TYPE_CHECKING:
    import threading
    from collections.abc import Callable, Sequence
    from typing import Protocol

    class Log(Protocol):
        def warning(self, message: str, *args: object) -> None: ...


RETRY_SECONDS = 0.1


def accept_forever(
    listeners: Sequence[socket.socket],
    on_connection: Callable[[socket.socket, object], None],
    log: Log,
    stopping: threading.Event,
    wakeup: socket.socket | None = None,
) -> None:
    """Accept on ``listeners`` and give each connection (blocking, as accepted) and its peer's
    address to ``on_connection``, on this thread, until ``stopping`` is set and ``wakeup`` (or a
    listener) is readable; a signal handler that raises ends it too."""
    poller = select.poll()
    by_fd = {}
    for sock in listeners:
        sock.setblocking(False)
        poller.register(sock, select.POLLIN)
        by_fd[sock.fileno()] = sock
    if wakeup is not None:
        poller.register(wakeup, select.POLLIN)
    while not stopping.is_set():
        for fd, _ in poller.poll():
            listener = by_fd.get(fd)
            if listener is None or stopping.is_set():
                continue
            try:
                connection, peer = listener.accept()
            except (BlockingIOError, InterruptedError):
                continue
            except OSError as exc:
                log.warning("cannot accept a connection: %s", exc)
                stopping.wait(RETRY_SECONDS)
                continue
            connection.setblocking(True)
            on_connection(connection, peer)
