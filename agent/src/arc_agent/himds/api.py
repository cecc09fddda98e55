"""The himds local REST API as plain functions: request in, response out (no sockets here).

Rules applied to every request (reference §2; DESIGN.md "Identity and security model"):
a request carrying ``X-Forwarded-For`` is refused (no server-side request forgery through a
local proxy), ``Metadata: true`` is required, and ``api-version`` must be one the endpoint
supports. Error bodies are ours (HIMDS error bodies are not public, reference §12):
``{"error": "<code>", "error_description": "<text>"}``; the "Supported are ..." wording follows
the one observed behaviour [inferred].
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from urllib.parse import parse_qs, urlsplit

AGENT_STATUS_PATH = "/agentstatus"
AGENT_STATUS_API_VERSIONS = ("2019-08-15",)


@dataclass(frozen=True)
class Request:
    method: str
    target: str
    """The request target as sent: path plus query string."""
    headers: Mapping[str, str]
    """Header names in lower case."""


@dataclass(frozen=True)
class Response:
    status: HTTPStatus
    body: Mapping[str, object]
    headers: Mapping[str, str] = field(default_factory=dict)


def error_response(
    status: HTTPStatus, error: str, description: str, headers: Mapping[str, str] | None = None
) -> Response:
    return Response(status, {"error": error, "error_description": description}, dict(headers or {}))


@dataclass(frozen=True)
class Endpoint:
    api_versions: tuple[str, ...]
    handler: Callable[[Request], Response]


class HimdsApi:
    """Routes requests to the endpoints himds serves today."""

    def __init__(self, agent_version: str) -> None:
        self._agent_version = agent_version
        self._endpoints: Mapping[str, Endpoint] = {
            AGENT_STATUS_PATH: Endpoint(AGENT_STATUS_API_VERSIONS, self._agent_status),
        }

    def handle(self, request: Request) -> Response:
        if "x-forwarded-for" in request.headers:
            return error_response(
                HTTPStatus.BAD_REQUEST,
                "invalid_request",
                "Requests with an X-Forwarded-For header are refused: himds serves local callers only",
            )
        if request.headers.get("metadata", "").strip().lower() != "true":
            return error_response(
                HTTPStatus.BAD_REQUEST,
                "invalid_request",
                "Required metadata header not specified or not correct: send 'Metadata: true'",
            )
        target = urlsplit(request.target)
        endpoint = self._endpoints.get(target.path)
        if endpoint is None:
            return error_response(HTTPStatus.NOT_FOUND, "not_found", f"No such endpoint: {target.path}")
        if request.method != "GET":
            return error_response(
                HTTPStatus.METHOD_NOT_ALLOWED,
                "invalid_request",
                f"Method {request.method} is not allowed on {target.path}; use GET",
                {"Allow": "GET"},
            )
        supported = " ".join(endpoint.api_versions)
        versions = parse_qs(target.query, keep_blank_values=True).get("api-version", [])
        if len(versions) != 1 or not versions[0]:
            return error_response(
                HTTPStatus.BAD_REQUEST,
                "invalid_request",
                f"Parameter api-version is missing or given more than once. Supported are {supported}",
            )
        if versions[0] not in endpoint.api_versions:
            return error_response(
                HTTPStatus.BAD_REQUEST,
                "invalid_request",
                f"Invalid api-version {versions[0]!r}. Supported are {supported}",
            )
        return endpoint.handler(request)

    def _agent_status(self, request: Request) -> Response:
        # Nothing connects this agent yet (``azcmagent connect`` is later work), so it is
        # Disconnected and has never sent a heartbeat.
        body: dict[str, object] = {
            "status": "Disconnected",
            "lastHeartBeat": None,
            "agentVersion": self._agent_version,
        }
        return Response(HTTPStatus.OK, body)
