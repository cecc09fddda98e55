"""Heartbeats answered before the framework: a pure ASGI middleware, outermost of ours.

A heartbeat is the one call every agent makes every five minutes; the framework's routing,
dependency resolution and middleware cost several times the work of the heartbeat itself.
So a request that is plainly a well-formed heartbeat (``POST`` to the exact path, a JSON body
of known length within the limit, a bearer assertion, a body that validates) is answered here
by ``Heartbeats.answer``, the same code the framework's route calls. Anything else, malformed
or unusual, goes on to the framework unchanged (its body replayed), which answers it with its
usual errors: so both ways give the same answers, and the errors keep one source.
"""

from __future__ import annotations

import re

from pydantic import ValidationError
from starlette.types import ASGIApp, Receive, Scope, Send

from arc_controlplane.api.agent.heartbeat import Heartbeats
from arc_controlplane.api.agent.schema import HeartbeatRequest
from arc_controlplane.api.agent.services import BASE_PATH
from arc_controlplane.errors import ArmError
from arc_controlplane.http.errors import error_response
from arc_controlplane.http.limits import replaying

_PATH = re.compile(re.escape(BASE_PATH) + r"/machines/([^/]{1,100})/heartbeat")
_JSON_HEADERS = [(b"content-type", b"application/json")]


class HeartbeatFastPath:
    def __init__(self, app: ASGIApp, heartbeats: Heartbeats, limit: int) -> None:
        self.app = app
        self.heartbeats = heartbeats
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        match = _PATH.fullmatch(scope["path"]) if scope["type"] == "http" else None
        if match is None or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        length, assertion, json_body = None, None, False
        for name, value in scope["headers"]:
            if name == b"content-length":
                length = int(value) if value.isdigit() else None
            elif name == b"authorization":
                scheme, _, token = value.partition(b" ")
                assertion = token.strip().decode("latin-1") if scheme.lower() == b"bearer" else None
            elif name == b"content-type":
                json_body = value.split(b";", 1)[0].strip().lower() == b"application/json"
        if length is None or length > self.limit or not assertion or not json_body:
            await self.app(scope, receive, send)
            return
        body = await _read(receive, length)
        try:
            request = HeartbeatRequest.model_validate_json(body)
        except ValidationError:
            await self.app(scope, replaying(body, receive), send)
            return
        try:
            answer = await self.heartbeats.answer(match[1], assertion, request)
        except ArmError as refused:
            await error_response(refused)(scope, receive, send)
            return
        payload = answer.model_dump_json(by_alias=True).encode()
        headers = [*_JSON_HEADERS, (b"content-length", str(len(payload)).encode("ascii"))]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": payload})


async def _read(receive: Receive, length: int) -> bytes:
    """The body (``length`` bytes as the server has checked against Content-Length)."""
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks)
