"""The Arc proxy's decisions (docs/gateway.md), pure: request heads in, routes and answers out.

``arcproxy`` listens on ``localhost:40343`` only. The agent's services (and extensions) in
gateway mode use it as their HTTPS proxy: each asks for a tunnel with ``CONNECT host:port``. The
Arc proxy carries it to the Arc gateway (TLS to ``gatewayEndpoint``, then ``CONNECT host:port``
with ``Arc-Gateway-Id`` in that session), or straight to the host when it is in the gateway's
``gatewayBypass`` list; an enterprise proxy (``proxy.url``, else ``HTTPS_PROXY``) sits in front of
either when one is set. The gateway's refusals reach the client as they were given.
"""

from __future__ import annotations

import json
import urllib.parse
from http import HTTPStatus

from arc_agent.cpclient.proxy import ARC_PROXY_PORT, ARC_PROXY_URL
from arc_agent.values import Value

TYPE_CHECKING = False
if TYPE_CHECKING:
    from pathlib import Path
    from typing import Any

LISTEN_PORT = ARC_PROXY_PORT
LISTEN_URL = ARC_PROXY_URL
GATEWAY_HEADER = "Arc-Gateway-Id"
ERROR_HEADER = "X-Arc-Gateway-Error"
MAX_HEAD = 8192


class GatewayFileError(ValueError):
    """The gateway file cannot be used; the message says why."""


class GatewaySettings(Value):
    """What the machine knows of its Arc gateway (``gateway.json``, written by ``azcmagent``):
    ``endpoint`` is ``https://HOST:PORT``; ``ca_certificate`` the control plane's CA (PEM) the
    gateway's certificate is checked against, "" for the system's CAs."""

    __slots__ = ("bypass", "ca_certificate", "endpoint", "gateway_id", "resource_id")

    def __init__(
        self,
        resource_id: str,
        gateway_id: str,
        endpoint: str,
        bypass: tuple[str, ...] = (),
        ca_certificate: str = "",
    ) -> None:
        self.resource_id = resource_id
        self.gateway_id = gateway_id
        self.endpoint = endpoint
        self.bypass = bypass
        self.ca_certificate = ca_certificate

    @property
    def host(self) -> str:
        return urllib.parse.urlsplit(self.endpoint).hostname or ""

    @property
    def port(self) -> int:
        return urllib.parse.urlsplit(self.endpoint).port or 443

    def document(self) -> dict[str, Any]:
        document: dict[str, Any] = {
            "id": self.resource_id,
            "gatewayId": self.gateway_id,
            "endpoint": self.endpoint,
            "bypass": list(self.bypass),
        }
        if self.ca_certificate:
            document["caCertificate"] = self.ca_certificate
        return document


def gateway_settings(document: Any) -> GatewaySettings:
    """The settings of a gateway document (the control plane's ``gateway`` of the machine's view,
    or ``gateway.json``); GatewayFileError naming what is missing."""
    if not isinstance(document, dict):
        raise GatewayFileError("the gateway description is not a JSON object")
    resource_id, gateway_id, endpoint = (document.get(k) for k in ("id", "gatewayId", "endpoint"))
    if not isinstance(resource_id, str) or not isinstance(gateway_id, str) or not gateway_id:
        raise GatewayFileError("the gateway description lacks its id or gatewayId")
    if not isinstance(endpoint, str) or not endpoint:
        raise GatewayFileError(
            "the gateway has no endpoint: the control plane runs no gateway service (arc-controlplane serve"
            " --gateway-port)"
        )
    try:
        parts = urllib.parse.urlsplit(endpoint)
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        raise GatewayFileError(f"the gateway endpoint {endpoint[:200]!r} is not https://HOST:PORT") from None
    if parts.scheme != "https" or not parts.hostname or parts.path not in ("", "/"):
        raise GatewayFileError(f"the gateway endpoint {endpoint[:200]!r} is not https://HOST:PORT")
    bypass = document.get("bypass") or []
    if not isinstance(bypass, list) or not all(isinstance(entry, str) for entry in bypass):
        raise GatewayFileError("the gateway's bypass list is not a list of host names")
    ca = document.get("caCertificate") or ""
    if not isinstance(ca, str):
        raise GatewayFileError("the gateway's caCertificate is not PEM text")
    return GatewaySettings(
        resource_id, gateway_id, endpoint.rstrip("/"), tuple(e.lower() for e in bypass), ca
    )


def read_gateway_file(path: Path) -> GatewaySettings | None:
    """The gateway of ``gateway.json``; None when there is none or it cannot be used."""
    try:
        return load_gateway_text(path.read_text(encoding="utf-8"))
    except (OSError, GatewayFileError):
        return None


def load_gateway_text(text: str) -> GatewaySettings:
    try:
        return gateway_settings(json.loads(text))
    except json.JSONDecodeError as exc:
        raise GatewayFileError(f"the gateway file is not JSON: {exc}") from None


class Refusal(Value):
    """An answer the Arc proxy gives itself (or passes on from the gateway)."""

    __slots__ = ("reason", "status")

    def __init__(self, status: int, reason: str) -> None:
        self.status = status
        self.reason = reason

    def encode(self) -> bytes:
        """The answer; the reason is the status line's phrase too, since clients that tunnel
        (Python's http.client, curl) show that line and not the body."""
        header = self.reason.encode("ascii", "replace").replace(b"\r", b" ").replace(b"\n", b" ")[:500]
        phrase = f"{_phrase(self.status)}: ".encode() + header
        body = f"{self.reason}\n".encode()
        return (
            f"HTTP/1.1 {self.status} ".encode()
            + phrase
            + b"\r\nContent-Type: text/plain; charset=utf-8\r\n"
            + b"Connection: close\r\n"
            + ERROR_HEADER.encode()
            + b": "
            + header
            + f"\r\nContent-Length: {len(body)}\r\n\r\n".encode()
            + body
        )


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


class Route(Value):
    """Where a tunnel goes: ``via_gateway`` or straight to ``host:port``."""

    __slots__ = ("host", "port", "via_gateway")

    def __init__(self, host: str, port: int, via_gateway: bool) -> None:
        self.host = host
        self.port = port
        self.via_gateway = via_gateway

    @property
    def authority(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def parse_authority(authority: str) -> tuple[str, int] | None:
    host, sep, port = authority.rpartition(":")
    if not sep or not port.isdigit() or not host or len(authority) > 300:
        return None
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    number = int(port)
    return (host.lower(), number) if 0 < number < 65536 else None


def _bypassed(host: str, bypass: tuple[str, ...]) -> bool:
    for entry in bypass:
        if entry.startswith("*."):
            if host.endswith(entry[1:]):
                return True
        elif host == entry:
            return True
    return False


def route(head: bytes, gateway: GatewaySettings | None) -> Route | Refusal:
    """The route of a client's request head (what came before the first empty line)."""
    if gateway is None:
        return Refusal(
            503,
            "the machine has no Arc gateway (azcmagent connect --gateway-id, or link it and run"
            " 'azcmagent config set connection.type gateway')",
        )
    line = head.split(b"\r\n", 1)[0].decode("latin-1")
    parts = line.split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        return Refusal(400, "not an HTTP/1.1 request")
    if parts[0] != "CONNECT":
        return Refusal(405, "the Arc proxy only carries HTTPS: ask for a tunnel with CONNECT host:port")
    target = parse_authority(parts[1])
    if target is None:
        return Refusal(400, "CONNECT needs host:port")
    return Route(target[0], target[1], via_gateway=not _bypassed(target[0], gateway.bypass))


def connect_head(authority: str, extra: dict[str, str]) -> bytes:
    """A ``CONNECT`` request head for ``authority`` with ``extra`` headers."""
    lines = [f"CONNECT {authority} HTTP/1.1", f"Host: {authority}", *(f"{k}: {v}" for k, v in extra.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def status_of(head: bytes) -> tuple[int, str]:
    """(status, reason) of an answer head: the ``X-Arc-Gateway-Error`` header when there is one,
    else the status line's phrase; (0, "...") when it is not an HTTP answer."""
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
        return 0, "the answer is not HTTP"
    reason = parts[2] if len(parts) > 2 else ""
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep and name.strip().lower() == ERROR_HEADER.lower():
            reason = value.strip()
    return int(parts[1]), reason
