"""The control plane's services, each under its own host name (docs/endpoints.md). Pure.

The real agent talks to distinct endpoints: identity (``login.microsoftonline.com``), management
(``management.azure.com``), the agent service (``gbl.his.arc.azure.com``), machine configuration
(``agentserviceapi.guestconfiguration.azure.com``), notifications
(``guestnotificationservice.azure.com``) and package downloads (``download.microsoft.com``). With
``serve --endpoint-domain DOMAIN`` this control plane serves each service under the same first
labels in DOMAIN (``login.DOMAIN``, ``gbl.his.DOMAIN``, ...), on its one port and certificate, so
that a proxy's or gateway's allow-list and the agent's ``proxy.bypass`` groups can name them. A
service's name serves that service only (anything else is 421 with the right URL); the control
plane's own address (``--public-url``) keeps serving everything.
"""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass
from functools import cached_property

IDENTITY = "identity"
MANAGEMENT = "management"
AGENT_SERVICE = "agentService"
GUEST_CONFIGURATION = "guestConfiguration"
NOTIFICATIONS = "notifications"
DOWNLOADS = "downloads"
SERVICES = (IDENTITY, MANAGEMENT, AGENT_SERVICE, GUEST_CONFIGURATION, NOTIFICATIONS, DOWNLOADS)

FIRST_LABELS = {
    IDENTITY: "login",
    MANAGEMENT: "management",
    AGENT_SERVICE: "gbl.his",
    GUEST_CONFIGURATION: "agentserviceapi.guestconfiguration",
    NOTIFICATIONS: "guestnotificationservice",
    DOWNLOADS: "download",
}
"""The labels before the domain: those of the real service's public host name."""

_MANAGEMENT = ("/subscriptions", "/providers", "/tenants", "/metadata/", "/resourcegroups")
_DOWNLOADS = (
    "/downloads/",
    "/agent/v1/agentpackages",
    "/agent/v1/extensionpackages",
    "/agent/v1/packagesigningkey",
)


def service_of(path: str) -> str | None:
    """The service a request path belongs to; None for what every name serves (``/healthz``,
    the API's own documentation)."""
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


@dataclass(frozen=True)
class Endpoints:
    """Where each service is: ``https://LABELS.DOMAIN:PORT`` with a domain, else the public URL."""

    public_url: str
    domain: str = ""

    @property
    def port(self) -> int:
        return urllib.parse.urlsplit(self.public_url).port or 443

    def host(self, service: str) -> str:
        if not self.domain:
            return urllib.parse.urlsplit(self.public_url).hostname or ""
        return f"{FIRST_LABELS[service]}.{self.domain}"

    def url(self, service: str) -> str:
        """The base URL of ``service`` (no trailing slash)."""
        if not self.domain:
            return self.public_url.rstrip("/")
        port = "" if self.port == 443 else f":{self.port}"
        return f"https://{self.host(service)}{port}"

    @cached_property
    def _by_name(self) -> dict[str, str]:
        """Each service's name to the service (looked up on every request)."""
        return {self.host(service): service for service in SERVICES} if self.domain else {}

    def url_for(self, service: str, host_header: str) -> str:
        """The base URL of ``service`` for a client that came by ``host_header``: its own name
        for a client that uses the services' names, else the control plane's URL (a link to
        another host than the one a client called is one it may rightly refuse to follow)."""
        if _host_of(host_header) in self._by_name:
            return self.url(service)
        return self.public_url.rstrip("/")

    def names(self) -> tuple[str, ...]:
        """The services' host names (none without a domain): for the certificate and the gateway."""
        return tuple(self.host(service) for service in SERVICES) if self.domain else ()

    def document(self) -> dict[str, str]:
        """What the agent reads (``GET /agent/v1/endpoints``): each service's base URL."""
        return {service: self.url(service) for service in SERVICES}

    def misdirected(self, host_header: str, path: str) -> str | None:
        """The URL that serves ``path`` when the request came to another service's name; None
        when this name serves it (its own service, a path of none, or not a service's name)."""
        if not self.domain:
            return None
        host = _host_of(host_header)
        if host not in self._by_name:
            return None
        wanted = service_of(path)
        if wanted is None or wanted == self._by_name[host]:
            return None
        return self.url(wanted)


def _host_of(host_header: str) -> str:
    """The host of a ``Host`` header (no port, lower case, no trailing dot)."""
    host = host_header.strip()
    if not host.endswith("]"):  # not a bare IPv6 literal: a port may follow
        host = host.rsplit(":", 1)[0]
    return host.rstrip(".").lower()
