"""The outermost layer of the application: no exception ever reaches the HTTP server.

Starlette's ``ServerErrorMiddleware`` sends the answer of the error handler and then raises the
exception again, for the server to log; uvicorn then closes the connection under the client,
which (on a kept-alive connection, as agents use) could read no answer and reported the control
plane unreachable although it was up. :class:`ErrorGuard` logs the exception once, answers
with an ARM error body if nothing was sent yet, and returns normally, so the connection stays as
HTTP says it should.
"""

from __future__ import annotations

import logging

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from arc_controlplane.db.failures import storage_failure
from arc_controlplane.http.errors import error_response, unexpected_error

LOG = logging.getLogger(__name__)


class ErrorGuard:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def watch(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, watch)
        except Exception as exc:
            failure = storage_failure(exc)
            if failure is not None:
                reason = " ".join(str(getattr(exc, "orig", exc)).split())
                LOG.warning(
                    "%s %s: the database failed (%s): %s",
                    scope["method"],
                    scope["path"],
                    failure.value,
                    reason,
                )
            else:
                LOG.error("%s %s: unexpected error", scope["method"], scope["path"], exc_info=exc)
            if not started:
                await error_response(unexpected_error(exc))(scope, receive, send)
