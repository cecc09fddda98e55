"""The himds local REST API as plain functions: request in, response out (no sockets here).

Rules applied to every request (docs/reference/himds.md; DESIGN.md "Identity and security model"):
a request carrying ``X-Forwarded-For`` is refused (no server-side request forgery through a
local proxy), ``Metadata: true`` is required, and ``api-version`` must be one the endpoint
supports. Error bodies are ours (HIMDS error bodies are not public, docs/reference/not-public.md):
``{"error": "<code>", "error_description": "<text>"}``; the "Supported are ..." wording follows
the one observed behaviour [inferred].

Endpoints (docs/himds.md):

- ``/agentstatus``: the agent's status;
- ``/metadata/instance``, ``/metadata/instance/compute``, ``/metadata/instance/network``:
  instance metadata, pre-rendered (:mod:`arc_agent.himds.instance`); 404 ``not_connected``
  when the machine is not connected;
- ``/metadata/identity/oauth2/token``: a token of the machine's system-assigned identity through
  the challenge flow (:mod:`arc_agent.himds.tokens`).

What the API serves comes from injected parts, so the himds daemon decides where they come
from: the connection state (a callable), the agent status (a callable), the system
information (a callable), and the token source (a callable asking the control plane).
"""

from __future__ import annotations

import dataclasses
import grp
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs, urlsplit

from arc_agent.config.connection import ConnectionState
from arc_agent.errors import AzcmError
from arc_agent.himds.instance import InstanceDocuments, InstanceMetadata
from arc_agent.himds.statewatch import StateFileWatcher
from arc_agent.himds.tokens import ChallengeStore, TokenCache, TokenSource, TokenUnavailable
from arc_agent.metadata.sysinfo import SystemInfo, collect_system_info
from arc_agent.paths import AgentPaths

AGENT_STATUS_PATH = "/agentstatus"
AGENT_STATUS_API_VERSIONS = ("2019-08-15",)
INSTANCE_PATH = "/metadata/instance"
COMPUTE_PATH = "/metadata/instance/compute"
NETWORK_PATH = "/metadata/instance/network"
INSTANCE_API_VERSIONS = ("2019-06-01", "2019-08-15", "2019-11-01", "2020-06-01", "2021-02-01")
TOKEN_PATH = "/metadata/identity/oauth2/token"  # noqa: S105 - a path, not a password
TOKEN_API_VERSIONS = ("2019-11-01", "2020-06-01")
USER_ASSIGNED_PARAMETERS = ("client_id", "object_id", "mi_res_id", "msi_res_id", "principal_id")
MAX_RESOURCE_LENGTH = 512
HIMDS_GROUP = "himds"

StateProvider = Callable[[], "ConnectionState | None"]
"""The connection state now, or None when the machine is not connected."""
StatusProvider = Callable[[], Mapping[str, Any]]
"""What the himds daemon knows: ``status`` (``Connected``, ``Disconnected``, ``Expired``, ...) and
``lastHeartbeat`` (ISO 8601), both optional."""


def not_connected() -> ConnectionState | None:
    return None


@dataclass(frozen=True)
class Request:
    method: str
    target: str
    """The request target as sent: path plus query string."""
    headers: Mapping[str, str]
    """Header names in lower case."""
    caller: Callable[[], int | None] = field(default=lambda: None)
    """The uid of the local user who sent it (looked up only when needed; ``peers.py``)."""


@dataclass(frozen=True)
class Response:
    status: HTTPStatus
    body: Mapping[str, object] | bytes
    """A JSON object, or JSON already encoded (UTF-8)."""
    headers: Mapping[str, str] = field(default_factory=dict)


def error_response(
    status: HTTPStatus, error: str, description: str, headers: Mapping[str, str] | None = None
) -> Response:
    return Response(status, {"error": error, "error_description": description}, dict(headers or {}))


def not_connected_response(what: str) -> Response:
    return error_response(
        HTTPStatus.NOT_FOUND,
        "not_connected",
        f"This machine is not connected to Azure Arc, so it has no {what}: run 'azcmagent connect' first",
    )


@dataclass(frozen=True)
class Endpoint:
    api_versions: tuple[str, ...]
    handler: Callable[[Request, Mapping[str, list[str]]], Response]


class HimdsApi:
    """Routes requests to the endpoints himds serves."""

    def __init__(
        self,
        agent_version: str,
        *,
        state: StateProvider = not_connected,
        status: StatusProvider | None = None,
        metadata: InstanceMetadata | None = None,
        challenges: ChallengeStore | None = None,
        tokens: TokenCache | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """Without ``metadata`` the metadata endpoints answer 503; without ``challenges`` and
        ``tokens`` the token endpoint answers 501 (a himds with no way to get tokens)."""
        self._agent_version = agent_version
        self._state = state
        self._status = status
        self._metadata = metadata
        self._challenges = challenges
        self._tokens = tokens
        self._clock = clock
        self._endpoints: Mapping[str, Endpoint] = {
            AGENT_STATUS_PATH: Endpoint(AGENT_STATUS_API_VERSIONS, self._agent_status),
            INSTANCE_PATH: Endpoint(INSTANCE_API_VERSIONS, self._instance),
            COMPUTE_PATH: Endpoint(INSTANCE_API_VERSIONS, self._instance),
            NETWORK_PATH: Endpoint(INSTANCE_API_VERSIONS, self._instance),
            TOKEN_PATH: Endpoint(TOKEN_API_VERSIONS, self._token),
        }

    @classmethod
    def for_host(
        cls,
        agent_version: str,
        paths: AgentPaths,
        *,
        state: StateProvider | None = None,
        status: StatusProvider | None = None,
        system: Callable[[], SystemInfo] | None = None,
        token_source: TokenSource | None = None,
        himds_group: int | None = None,
    ) -> HimdsApi:
        """The API with its parts on this host (the state file, the tokens directory, ...).

        Defaults: the state is read from ``paths.agent_config`` when it changes; the system
        information is collected now, once; the key files belong to group ``himds`` if it
        exists. Without ``token_source`` the token endpoint answers 501.
        """
        if system is None:
            system = constant(collect_system_info())
        if himds_group is None:
            himds_group = lookup_group(HIMDS_GROUP)
        return cls(
            agent_version,
            state=state or StateFileWatcher(paths.agent_config),
            status=status,
            metadata=InstanceMetadata(system),
            challenges=ChallengeStore(paths.tokens_dir, group=himds_group),
            tokens=TokenCache(token_source) if token_source is not None else None,
        )

    def forget_tokens(self) -> None:
        """Drop the cached tokens (the machine's identity changed)."""
        if self._tokens is not None:
            self._tokens.forget()

    def close(self) -> None:
        """Delete outstanding challenge files (himds is stopping)."""
        if self._challenges is not None:
            self._challenges.close()

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
        path = target.path.rstrip("/") or "/"
        endpoint = self._endpoints.get(path)
        if endpoint is None:
            return error_response(HTTPStatus.NOT_FOUND, "not_found", f"No such endpoint: {target.path}")
        if request.method != "GET":
            return error_response(
                HTTPStatus.METHOD_NOT_ALLOWED,
                "invalid_request",
                f"Method {request.method} is not allowed on {path}; use GET",
                {"Allow": "GET"},
            )
        supported = " ".join(endpoint.api_versions)
        query = parse_qs(target.query, keep_blank_values=True)
        versions = query.get("api-version", [])
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
        try:
            return endpoint.handler(dataclasses.replace(request, target=path), query)
        except AzcmError as exc:  # the state file is unusable: say so, with the way out
            return error_response(HTTPStatus.INTERNAL_SERVER_ERROR, "server_error", exc.message)

    # --- /agentstatus -------------------------------------------------------------------------

    def _agent_status(self, request: Request, query: Mapping[str, list[str]]) -> Response:
        status: str = "Disconnected"
        last_heartbeat: object = None
        if self._state() is not None:
            known = self._status() if self._status is not None else {}
            status = str(known.get("status") or "Connected")
            last_heartbeat = known.get("lastHeartbeat") or None
        body: dict[str, object] = {
            "status": status,
            "lastHeartBeat": last_heartbeat,
            "agentVersion": self._agent_version,
        }
        return Response(HTTPStatus.OK, body)

    # --- /metadata/instance -------------------------------------------------------------------

    def _instance(self, request: Request, query: Mapping[str, list[str]]) -> Response:
        formats = query.get("format", ["json"])
        if formats != ["json"]:
            return error_response(
                HTTPStatus.BAD_REQUEST,
                "invalid_request",
                f"Invalid format {','.join(formats)!r}: himds answers format=json only (or leave it out)",
            )
        state = self._state()
        if state is None:
            return not_connected_response("instance metadata")
        if self._metadata is None:
            return error_response(
                HTTPStatus.SERVICE_UNAVAILABLE,
                "service_unavailable",
                "Instance metadata is not available in this himds; restart himds",
            )
        documents: InstanceDocuments = self._metadata.documents(state)
        if request.target == COMPUTE_PATH:
            return Response(HTTPStatus.OK, documents.compute)
        if request.target == NETWORK_PATH:
            return Response(HTTPStatus.OK, documents.network)
        return Response(HTTPStatus.OK, documents.instance)

    # --- /metadata/identity/oauth2/token ------------------------------------------------------

    def _token(self, request: Request, query: Mapping[str, list[str]]) -> Response:
        for name in USER_ASSIGNED_PARAMETERS:
            if name in query:
                return error_response(
                    HTTPStatus.BAD_REQUEST,
                    "invalid_request",
                    f"User-assigned identities are not supported: himds gives tokens of the machine's "
                    f"system-assigned identity only; leave out the {name} parameter",
                )
        resources = query.get("resource", [])
        if len(resources) != 1 or not resources[0]:
            return error_response(
                HTTPStatus.BAD_REQUEST,
                "invalid_request",
                "Parameter resource is missing or given more than once: give the audience of the token, "
                "e.g. resource=https://management.azure.com/",
            )
        resource = resources[0]
        if len(resource) > MAX_RESOURCE_LENGTH or not resource.isprintable() or " " in resource:
            return error_response(
                HTTPStatus.BAD_REQUEST,
                "invalid_resource",
                f"Parameter resource must be a URI of at most {MAX_RESOURCE_LENGTH} printable characters "
                "without spaces, e.g. https://management.azure.com/",
            )
        if self._state() is None:
            return not_connected_response("managed identity")
        if self._challenges is None or self._tokens is None:
            return error_response(
                HTTPStatus.NOT_IMPLEMENTED,
                "not_implemented",
                "This himds cannot get managed identity tokens: it was started without a connection to "
                "the control plane; restart himds (systemctl restart himdsd)",
            )
        authorization = request.headers.get("authorization")
        if authorization is None:
            return self._challenge(request.caller())
        scheme, _, secret = authorization.strip().partition(" ")
        claim = self._challenges.redeem(secret.strip()) if scheme.lower() == "basic" else None
        if claim is None:
            return error_response(
                HTTPStatus.UNAUTHORIZED,
                "invalid_secret",
                "The secret is unknown, expired or already used (send 'Authorization: Basic <content of the "
                "key file>' once); request again without an Authorization header for a new challenge",
            )
        try:
            token = self._tokens.get(resource)
        except TokenUnavailable as exc:
            claim.release()
            return error_response(exc.status, exc.error, exc.description)
        except BaseException:
            claim.release()
            raise
        claim.consume()
        return Response(HTTPStatus.OK, token.answer(self._clock()))

    def _challenge(self, caller: int | None) -> Response:
        assert self._challenges is not None
        try:
            key_file = self._challenges.issue(caller)
        except TokenUnavailable as exc:
            return error_response(exc.status, exc.error, exc.description)
        return error_response(
            HTTPStatus.UNAUTHORIZED,
            "unauthorized",
            "Read the secret from the key file named in WWW-Authenticate (readable by root and group "
            "himds) and send it back as 'Authorization: Basic <secret>'",
            {"WWW-Authenticate": f"Basic realm={key_file}"},
        )


def constant(info: SystemInfo) -> Callable[[], SystemInfo]:
    """A provider that always gives ``info`` (collected once)."""

    def provide() -> SystemInfo:
        return info

    return provide


def lookup_group(name: str) -> int | None:
    """The gid of group ``name``, or None when there is no such group."""
    try:
        return grp.getgrnam(name).gr_gid
    except KeyError:
        return None
