"""Which way a request of the agent goes: straight to the control plane or through an HTTP proxy
(docs/proxy.md). Pure: settings and environment in, a route out.

As the real agent: ``proxy.url`` (``azcmagent config set proxy.url http://HOST:PORT``) takes
precedence over ``HTTPS_PROXY`` / ``https_proxy`` in the service's environment; ``proxy.bypass``
names the service groups that go direct although a proxy is set (``AAD``: identity, ``ARM``:
management, ``Arc``: the agent service, machine configuration, notifications, packages; which
request is in which: cpclient/endpoints.py), and
``NO_PROXY`` / ``no_proxy`` is honoured for a proxy that came from the environment. TLS goes
through the proxy with ``CONNECT``: the proxy sees host names, never content. Credentials in an
environment proxy URL (``http://user:pass@host:port``) become ``Proxy-Authorization`` and never
appear in a message (``Proxy.display``)."""

from __future__ import annotations

import base64
import urllib.parse
from collections.abc import Mapping, Sequence

from arc_agent.values import Value

AAD, ARM, ARC = "AAD", "ARM", "Arc"
CATEGORIES = (AAD, ARM, ARC)
GATEWAY_SOURCE = "connection.type gateway"
"""The source of the Arc proxy as the services' proxy (docs/gateway.md)."""
ARC_PROXY_PORT = 40343
ARC_PROXY_URL = f"http://localhost:{ARC_PROXY_PORT}"
"""Where the Arc proxy listens: the services' proxy in gateway mode, and what ``show`` prints."""


class ProxyError(ValueError):
    """A proxy URL that cannot be used; the message says why (never with its credentials)."""


class Proxy(Value):
    """An HTTP proxy: ``authorization`` is ``Basic ...`` for ``Proxy-Authorization`` or "";
    ``source`` where it came from (``proxy.url`` or the environment variable's name)."""

    __slots__ = ("authorization", "host", "port", "source")
    hidden = ("authorization",)

    def __init__(self, host: str, port: int, authorization: str = "", source: str = "proxy.url") -> None:
        self.host = host
        self.port = port
        self.authorization = authorization
        self.source = source

    @property
    def display(self) -> str:
        """``http://host:port`` (no credentials): what show, check and messages print."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"


def parse_proxy(url: str, source: str) -> Proxy:
    """``http://[user:pass@]host[:port]`` (port 80 by default) as a :class:`Proxy`."""
    try:
        parts = urllib.parse.urlsplit(url.strip())
        port = parts.port
    except ValueError:
        raise ProxyError(f"the proxy URL in {source} is malformed: expected http://HOST[:PORT]") from None
    if parts.scheme.lower() != "http" or not parts.hostname or parts.path not in ("", "/"):
        raise ProxyError(f"the proxy URL in {source} is not of the form http://HOST[:PORT]")
    authorization = ""
    if parts.username is not None:
        user = urllib.parse.unquote(parts.username)
        password = urllib.parse.unquote(parts.password or "")
        authorization = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
    return Proxy(parts.hostname, port or 80, authorization, source)


def _bypassed_by_no_proxy(host: str, no_proxy: str) -> bool:
    if not no_proxy.strip():
        return False
    import ipaddress  # here: the Arc proxy's resident loads it only when NO_PROXY is set

    for entry in (e.strip().lower() for e in no_proxy.split(",")):
        if not entry:
            continue
        if entry == "*":
            return True
        entry = entry.split(":", 1)[0] if entry.count(":") == 1 else entry
        try:
            if ipaddress.ip_address(host) in ipaddress.ip_network(entry, strict=False):
                return True
            continue
        except ValueError:
            pass
        name = entry.lstrip(".")
        if host == name or host.endswith("." + name):
            return True
    return False


class ProxyPolicy(Value):
    """The proxy (or None), the service groups that bypass it, and ``NO_PROXY`` of the
    environment (only for a proxy that came from the environment)."""

    __slots__ = ("bypass", "no_proxy", "proxy")

    def __init__(self, proxy: Proxy | None, bypass: tuple[str, ...] = (), no_proxy: str = "") -> None:
        self.proxy = proxy
        self.bypass = bypass
        self.no_proxy = no_proxy

    def route(self, category: str, host: str) -> Proxy | None:
        """The proxy a request of ``category`` to ``host`` goes through, or None (direct)."""
        if self.proxy is None or category in self.bypass:
            return None
        if self.proxy.source != "proxy.url" and _bypassed_by_no_proxy(host.lower(), self.no_proxy):
            return None
        return self.proxy


def extension_environment(chosen: ProxyPolicy, environ: Mapping[str, str]) -> dict[str, str]:
    """What extension handlers' commands get so that their own downloads (CustomScript's
    ``fileUris``) take the agent's way out (docs/proxy.md): ``HTTPS_PROXY`` and ``https_proxy``
    (the Arc proxy in gateway mode, else ``proxy.url``, else the variable extd itself has, as it
    is, credentials included) and ``NO_PROXY`` with it; nothing when the agent goes direct."""
    proxy = chosen.proxy
    if proxy is None:
        return {}
    url = (
        environ.get(proxy.source, proxy.display)
        if proxy.source in ("HTTPS_PROXY", "https_proxy")
        else proxy.display
    )
    found = {"HTTPS_PROXY": url, "https_proxy": url}
    if chosen.no_proxy:
        found.update(NO_PROXY=chosen.no_proxy, no_proxy=chosen.no_proxy)
    return found


def policy(proxy_url: str, bypass: Sequence[str], environ: Mapping[str, str]) -> ProxyPolicy:
    """The policy of the settings ``proxy.url`` and ``proxy.bypass`` and the environment."""
    if proxy_url:
        return ProxyPolicy(parse_proxy(proxy_url, "proxy.url"), tuple(bypass))
    for name in ("HTTPS_PROXY", "https_proxy"):
        if environ.get(name):
            no_proxy = environ.get("NO_PROXY") or environ.get("no_proxy") or ""
            return ProxyPolicy(parse_proxy(environ[name], name), tuple(bypass), no_proxy)
    return ProxyPolicy(None, tuple(bypass))
