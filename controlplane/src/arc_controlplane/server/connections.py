"""Connections a client cannot hold without sending a request (issue 10, finding 2).

uvicorn gives a connection no deadline before its first request, none for the rest of a
request's headers or body, and stops its keep-alive timer as soon as any byte arrives: 1,000 idle
TLS connections, or as many half-sent requests, stayed open for ever, and at the process's file
limit every new client was refused. Here each connection is held to:

- ``handshake_timeout`` for the TLS handshake (asyncio's default was 60 s);
- ``header_timeout`` from the moment it is open (or its previous answer was sent) until a
  request's headers are all in, then ``body_timeout`` until its body is all in: a client that
  sends too slowly gets ARM's 408 and the connection is closed. A request that has arrived whole
  has no deadline of ours (the agents' long-polls last two minutes);
- at most ``max_per_address`` connections from one client address, and ``max_total`` in all
  (below the file limit, so the database and log files always have descriptors left); beyond
  either, a new connection is answered 503 with ``Retry-After`` and closed.

:func:`guarded_protocol` makes the uvicorn protocol class that does it (httptools' one,
extended); ``serve.py`` uses it with ``ssl_handshake_timeout``.
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import resource
from dataclasses import dataclass, field, replace
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from arc_controlplane.settings import ConnectionPolicy

LOG = logging.getLogger(__name__)
RESERVED_FILES = 256
"""Descriptors kept for the database, log files and the like when the file limit is counted."""
RETRY_AFTER_SECONDS = 5


def raise_file_limit(policy: ConnectionPolicy) -> ConnectionPolicy:
    """Raise this process's open-file limit to its hard limit (the unit's ``LimitNOFILE``), and
    bound ``max_total`` by it; the policy to serve with."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        soft = hard
    limit = soft if soft != resource.RLIM_INFINITY else policy.max_total + RESERVED_FILES
    usable = max(16, min(policy.max_total, limit - RESERVED_FILES))
    if usable < policy.max_total:
        LOG.warning(
            "the open-file limit is %d: at most %d connections at once (raise LimitNOFILE for more)",
            limit,
            usable,
        )
    return replace(policy, max_per_address=min(policy.max_per_address, usable), max_total=usable)


@dataclass
class ConnectionCount:
    """Open connections, in all and by client address (one event loop: no lock needed)."""

    total: int = 0
    by_address: collections.Counter[str] = field(default_factory=collections.Counter)

    def add(self, address: str) -> None:
        self.total += 1
        self.by_address[address] += 1

    def remove(self, address: str) -> None:
        self.total -= 1
        self.by_address[address] -= 1
        if self.by_address[address] <= 0:
            del self.by_address[address]


def _raw_answer(status: int, reason: str, code: str, message: str, extra: dict[str, str]) -> bytes:
    body = json.dumps({"error": {"code": code, "message": message}}).encode()
    head = [f"HTTP/1.1 {status} {reason}", "content-type: application/json",
            f"content-length: {len(body)}", "connection: close"]  # fmt: skip
    head += [f"{name}: {value}" for name, value in extra.items()]
    return ("\r\n".join(head) + "\r\n\r\n").encode("ascii") + body


BUSY = "The control plane has too many connections open{}; connect again after {} seconds."
SLOW = "The request did not arrive within {} seconds; send it again, whole."


def guarded_protocol(
    policy: ConnectionPolicy, count: ConnectionCount | None = None
) -> type[HttpToolsProtocol]:
    """An ``HttpToolsProtocol`` class held to ``policy``; every connection of a server shares
    ``count``."""
    shared = count if count is not None else ConnectionCount()

    class GuardedHttpToolsProtocol(HttpToolsProtocol):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._deadline: asyncio.TimerHandle | None = None
            self._address: str | None = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            address = self.client[0] if self.client else "unknown"
            if shared.total >= policy.max_total or shared.by_address[address] >= policy.max_per_address:
                whose = "" if shared.total >= policy.max_total else f" from {address}"
                message = BUSY.format(whose, RETRY_AFTER_SECONDS)
                answer = _raw_answer(503, "Service Unavailable", "ServiceUnavailable", message,
                                     {"retry-after": str(RETRY_AFTER_SECONDS)})  # fmt: skip
                transport.write(answer)
                transport.close()
                return
            self._address = address
            shared.add(address)
            self._arm(policy.header_timeout)

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            if self._address is not None:
                shared.remove(self._address)
                self._address = None
            super().connection_lost(exc)

        def on_headers_complete(self) -> None:
            super().on_headers_complete()
            self._arm(policy.body_timeout)  # cancelled at once if there is no body to wait for

        def on_message_complete(self) -> None:
            super().on_message_complete()
            self._disarm()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing():
                self._arm(policy.header_timeout)  # the next request, if any, must come in time

        def _arm(self, seconds: float) -> None:
            self._disarm()
            self._deadline = self.loop.call_later(seconds, self._too_slow, seconds)

        def _disarm(self) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
                self._deadline = None

        def _too_slow(self, seconds: float) -> None:
            self._deadline = None
            if self.transport.is_closing():
                return
            responding = (
                self.cycle is not None and self.cycle.response_started and not self.cycle.response_complete
            )
            if not responding:
                answer = _raw_answer(408, "Request Timeout", "RequestTimeout", SLOW.format(int(seconds)), {})
                self.transport.write(answer)
            if self.cycle is not None and not self.cycle.response_complete:
                self.cycle.disconnected = True
                self.cycle.message_event.set()
            self.transport.close()

    return GuardedHttpToolsProtocol
