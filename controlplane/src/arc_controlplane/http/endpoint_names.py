"""Each service's host name serves that service only (``serve --endpoint-domain``, docs/endpoints.md).

A request that reaches one service's name for another service's path (the agent service's name
for a management path, say) is refused with 421 Misdirected Request and the URL that serves it:
what a proxy's or gateway's allow-list admits by name then means what it says. Other names (the
control plane's own address) serve everything.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from arc_controlplane.endpoints import Endpoints
from arc_controlplane.errors import ArmError
from arc_controlplane.http.errors import error_response


class EndpointNameMiddleware:
    def __init__(self, app: ASGIApp, endpoints: Endpoints) -> None:
        self.app = app
        self.endpoints = endpoints

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and self.endpoints.domain:
            host = next((value for name, value in scope["headers"] if name == b"host"), b"")
            served_at = self.endpoints.misdirected(host.decode("latin-1"), scope["path"])
            if served_at is not None:
                error = ArmError(
                    421,
                    "MisdirectedRequest",
                    f"{host.decode('latin-1')} serves another service of the control plane; send"
                    f" {scope['path']} to {served_at} (docs/endpoints.md).",
                )
                await error_response(error)(scope, receive, send)
                return
        await self.app(scope, receive, send)
