"""Where each request of the agent goes: the control plane's services, each possibly under its
own host name (docs/endpoints.md). Pure.

The real agent talks to distinct endpoints per service: identity (AAD), management (ARM), the
agent service (``*.his.arc.azure.com``), machine configuration, notifications and package
downloads. The control plane says where its services are (``GET /agent/v1/endpoints``, read by
``azcmagent connect`` and kept in the connection state); a service it does not name is at the
control plane's own URL. A request path belongs to one service, and each service to one of the
``proxy.bypass`` groups (``AAD``, ``ARM``, ``Arc``: docs/proxy.md).
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from arc_agent.cpclient.proxy import AAD, ARC, ARM
from arc_agent.errors import AzcmError, ErrorCode

IDENTITY = "identity"
MANAGEMENT = "management"
AGENT_SERVICE = "agentService"
GUEST_CONFIGURATION = "guestConfiguration"
NOTIFICATIONS = "notifications"
DOWNLOADS = "downloads"
SERVICES = (IDENTITY, MANAGEMENT, AGENT_SERVICE, GUEST_CONFIGURATION, NOTIFICATIONS, DOWNLOADS)
DOCUMENT_PATH = "/agent/v1/endpoints"

_MANAGEMENT = ("/subscriptions", "/providers", "/tenants", "/metadata/", "/resourcegroups")
_DOWNLOADS = (
    "/downloads/",
    "/agent/v1/agentpackages",
    "/agent/v1/extensionpackages",
    "/agent/v1/packagesigningkey",
)


def service_of(path: str) -> str | None:
    """The service a request path belongs to; None for what every name serves (``/healthz``)."""
    lowered = urllib.parse.urlsplit(path).path.lower()
    if "/oauth2/" in lowered or "/.well-known/" in lowered or lowered.startswith("/common/discovery"):
        return IDENTITY
    if lowered.startswith(_MANAGEMENT):
        return MANAGEMENT
    if lowered.startswith(_DOWNLOADS):
        return DOWNLOADS
    if not lowered.startswith("/agent/v1/"):
        return None
    if lowered.startswith("/agent/v1/configurationpackages/") or "/guestconfigurationassignments" in lowered:
        return GUEST_CONFIGURATION
    if lowered.endswith("/notifications"):
        return NOTIFICATIONS
    return AGENT_SERVICE


def group_of(path: str) -> str:
    """The ``proxy.bypass`` group of a request path: ``AAD``, ``ARM`` or ``Arc``."""
    service = service_of(path)
    return AAD if service == IDENTITY else ARM if service == MANAGEMENT else ARC


@dataclass(frozen=True)
class Origin:
    host: str
    port: int

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"https://{host}" + ("" if self.port == 443 else f":{self.port}")


def parse_origin(url: str, what: str) -> Origin:
    """``https://HOST[:PORT]`` (nothing else) as an :class:`Origin`; AZCM0023 naming ``what``."""
    try:
        parts = urllib.parse.urlsplit(url.strip())
        port = parts.port
    except ValueError:
        parts, port = None, None
    if (
        parts is None
        or parts.scheme != "https"
        or not parts.hostname
        or parts.path not in ("", "/")
        or parts.query
        or parts.fragment
        or parts.username
    ):
        raise AzcmError(ErrorCode.INVALID_ARGUMENT, f"{what} {url!r} is not of the form https://HOST[:PORT]")
    return Origin(parts.hostname.lower(), port or 443)


@dataclass(frozen=True)
class Endpoints:
    """The control plane's URL and the services it names elsewhere."""

    base: Origin
    named: Mapping[str, Origin] = field(default_factory=dict)

    def origin_of(self, path: str) -> Origin:
        """Where a request for ``path`` goes: its service's name, else the control plane's URL
        (what no service owns, ``/healthz``, goes with the agent service)."""
        return self.named.get(service_of(path) or AGENT_SERVICE, self.base)

    def origins(self) -> set[Origin]:
        return {self.base, *self.named.values()}

    def document(self) -> dict[str, str]:
        """The named services as the connection state keeps them."""
        return {service: origin.url for service, origin in self.named.items()}


def endpoints(base_url: str, document: Mapping[str, Any] | None = None) -> Endpoints:
    """The control plane at ``base_url`` with the services ``document`` names (its
    ``/agent/v1/endpoints``, or the connection state's copy); services it does not know and
    names equal to the base are left out. AZCM0023 for a value that is not a base URL."""
    base = parse_origin(base_url, "the control plane URL")
    named: dict[str, Origin] = {}
    for service in SERVICES:
        value = (document or {}).get(service)
        if value is None:
            continue
        origin = parse_origin(str(value), f"the control plane's {service} endpoint")
        if origin != base:
            named[service] = origin
    return Endpoints(base, named)


def on_control_plane(uri: str, where: Endpoints) -> str | None:
    """The path (and query) of ``uri`` when it is on the control plane's URL or one of its
    services' names, under its agent API or downloads; None for anything else (a package the
    goal state names elsewhere is not fetched)."""
    try:
        parts = urllib.parse.urlsplit(uri)
        origin = Origin((parts.hostname or "").lower(), parts.port or 443)
    except ValueError:
        return None
    if parts.scheme != "https" or parts.username or origin not in where.origins():
        return None
    if not parts.path.startswith(("/agent/v1/", "/downloads/")) or "/../" in parts.path:
        return None
    return parts.path + (f"?{parts.query}" if parts.query else "")
