"""HTTPS to the control plane: one keep-alive connection, TLS verified against its CA, JSON.

Standard library only (``http.client`` and ``ssl``): the agent's memory budget has no room for
an HTTP library. A connection is reused while the server keeps it open and opened again
(once, at once) when it was closed; a failure to reach the server is ``ControlPlaneUnreachable``
(the CLI reports AZCM0026, himds backs off and retries). With a proxy policy (cpclient/proxy.py,
docs/proxy.md) each request goes direct or through its group's proxy with ``CONNECT``, one kept
connection per way.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
import ssl
import time
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from arc_agent import __version__
from arc_agent.cpclient.endpoints import Endpoints, Origin, endpoints, group_of, parse_origin
from arc_agent.cpclient.proxy import GATEWAY_SOURCE, Proxy, ProxyPolicy
from arc_agent.cpclient.tls import tls_context
from arc_agent.errors import AzcmError, ErrorCode

USER_AGENT = f"azcmagent/{__version__} (hybridops.arc)"
DEFAULT_TIMEOUT = 30.0
MAX_RESPONSE_BYTES = 4 * 1024 * 1024


class ControlPlaneUnreachable(AzcmError):
    """The control plane could not be reached (DNS, connection, TLS, timeout)."""

    def __init__(self, url: str, reason: str, proxy: Proxy | None = None) -> None:
        if proxy is None:
            super().__init__(
                ErrorCode.NETWORK_ERROR,
                f"cannot reach the control plane at {url}: {reason}; check the URL "
                "(azcmagent config get controlplane.url), the network, and that the control plane runs",
            )
        elif proxy.source == GATEWAY_SOURCE:
            super().__init__(
                ErrorCode.NETWORK_ERROR,
                f"cannot reach the control plane at {url} through the Arc proxy {proxy.display}"
                f" (connection.type gateway): {reason}; check that arcproxy runs (systemctl status arcproxyd,"
                " /var/opt/azcmagent/log/arcproxy.log) and that the Arc gateway admits this machine",
            )
        else:
            where = "azcmagent config get proxy.url" if proxy.source == "proxy.url" else proxy.source
            super().__init__(
                ErrorCode.NETWORK_ERROR,
                f"cannot reach the control plane at {url} through the proxy {proxy.display} (from"
                f" {proxy.source}): {reason}; check the proxy ({where}), that it runs and lets this"
                " machine CONNECT to the control plane",
            )
        self.reason = reason
        self.proxy = proxy


@dataclass(frozen=True)
class Reply:
    status: int
    headers: Mapping[str, str]
    """Header names in lower case."""
    body: bytes = b""
    document: Any = field(default=None)
    """The body parsed as JSON, or None when it is empty or not JSON."""

    def error_code(self) -> str:
        """The ``code`` of an ARM error body (``error.code``), or the OAuth ``error``."""
        error = self.document.get("error") if isinstance(self.document, dict) else None
        if isinstance(error, dict):
            return str(error.get("code", ""))
        return str(error or "")

    def error_message(self) -> str:
        if isinstance(self.document, dict):
            error = self.document.get("error")
            if isinstance(error, dict):
                return str(error.get("message", ""))
            description = self.document.get("error_description")
            if description:
                return str(description).split("\r\n", 1)[0]
        return self.body[:200].decode("utf-8", "replace")


CLOSED_BY_SERVER = (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError, ssl.SSLEOFError)
"""What a request on a connection the server has closed meets."""


def parse_base_url(url: str) -> urllib.parse.SplitResult:
    """The control plane URL if it is ``https://host[:port]`` (no path, query or user)."""
    parse_origin(url, "the control plane URL")  # AZCM0023 for anything else
    return urllib.parse.urlsplit(url)


class HttpsClient:
    """Requests to one control plane; not thread-safe (give each thread its own)."""

    def __init__(
        self,
        base_url: str,
        ca_file: Path | None,
        timeout: float = DEFAULT_TIMEOUT,
        proxies: ProxyPolicy | None = None,
        named: Mapping[str, Any] | None = None,
    ) -> None:
        """``named``: the services the control plane serves under other names (its
        ``/agent/v1/endpoints``, the connection state's ``endpoints``); each request goes to
        its path's service (cpclient/endpoints.py)."""
        parts = parse_base_url(base_url)
        self.base_url = f"https://{parts.netloc}"
        self.endpoints: Endpoints = endpoints(self.base_url, named)
        self.ca_file = ca_file
        self.timeout = timeout
        self._context = tls_context(ca_file)
        self.proxies = proxies or ProxyPolicy(None)
        self._connections: dict[tuple[Origin, Proxy | None], http.client.HTTPSConnection] = {}
        self._aborted = False

    def abort(self) -> None:
        """Wake a call blocked in another thread: it fails with ``ControlPlaneUnreachable``, and
        so does every later call (the client is being closed: no retry, no new connection)."""
        self._aborted = True
        for connection in list(self._connections.values()):
            sock = connection.sock
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        for connection in list(self._connections.values()):
            connection.close()
        self._connections.clear()

    def _drop(self, way: tuple[Origin, Proxy | None]) -> None:
        connection = self._connections.pop(way, None)
        if connection is not None:
            connection.close()

    def route(self, path: str) -> tuple[Origin, Proxy | None]:
        """Where a request for ``path`` goes (its service's origin) and through which proxy
        (None: direct)."""
        origin = self.endpoints.origin_of(path)
        return origin, self.proxies.route(group_of(path), origin.host)

    def json(
        self,
        method: str,
        path: str,
        body: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> Reply:
        data = None if body is None else json.dumps(body).encode()
        extra = {"Content-Type": "application/json"} if data is not None else {}
        return self.request(method, path, data, {**extra, **(headers or {})}, timeout)

    def form(self, path: str, fields: Mapping[str, str]) -> Reply:
        data = urllib.parse.urlencode(fields).encode()
        return self.request("POST", path, data, {"Content-Type": "application/x-www-form-urlencoded"})

    def request(
        self,
        method: str,
        path: str,
        data: bytes | None,
        headers: Mapping[str, str],
        timeout: float | None = None,
        limit: int = MAX_RESPONSE_BYTES,
    ) -> Reply:
        """``limit``: the largest answer taken (a larger one is ``ControlPlaneUnreachable``)."""
        all_headers = {"User-Agent": USER_AGENT, "Accept": "application/json", **headers}
        way = self.route(path)
        origin, proxy = way
        for attempt in (1, 2):
            if self._aborted:
                self.close()
                raise ControlPlaneUnreachable(origin.url, "the client was stopped")
            connection = self._connect(timeout, way)
            reused = connection.sock is not None
            try:
                if not reused:
                    connection.connect()
                if self._aborted:  # stopped while connecting: abort() found no socket to shut
                    self.close()
                    raise ControlPlaneUnreachable(origin.url, "the client was stopped")
                connection.request(method, path, body=data, headers=all_headers)
                response = connection.getresponse()
                body = response.read(limit + 1)
            except CLOSED_BY_SERVER as exc:
                self._drop(way)
                # The server closed a kept-alive connection (an idle one: its keep-alive timeout;
                # over TLS 1.3 that is an EOF at the next read): open a new one once.
                if attempt == 1 and (reused or not isinstance(exc, ssl.SSLEOFError)):
                    continue
                raise ControlPlaneUnreachable(origin.url, _reason(exc), proxy) from None
            except (OSError, http.client.HTTPException) as exc:
                self._drop(way)
                raise ControlPlaneUnreachable(origin.url, _reason(exc), proxy) from None
            if len(body) > limit:
                self._drop(way)
                raise ControlPlaneUnreachable(origin.url, "the answer is too large", proxy)
            reply_headers = {name.lower(): value for name, value in response.getheaders()}
            if response.will_close:
                self._drop(way)
            return Reply(response.status, reply_headers, body, _json_or_none(body))
        raise AssertionError("unreachable")  # pragma: no cover

    def _connect(
        self, timeout: float | None, way: tuple[Origin, Proxy | None]
    ) -> http.client.HTTPSConnection:
        wanted = self.timeout if timeout is None else timeout
        connection = self._connections.get(way)
        origin, proxy = way
        if connection is None:
            if proxy is None:
                connection = http.client.HTTPSConnection(
                    origin.host, origin.port, timeout=wanted, context=self._context
                )
            else:  # TLS to the control plane inside the proxy's CONNECT tunnel
                connection = http.client.HTTPSConnection(
                    proxy.host, proxy.port, timeout=wanted, context=self._context
                )
                tunnel = {"Proxy-Authorization": proxy.authorization} if proxy.authorization else None
                connection.set_tunnel(origin.host, origin.port, headers=tunnel)
            self._connections[way] = connection
        else:
            connection.timeout = wanted
            if connection.sock is not None:
                connection.sock.settimeout(wanted)
        return connection


def _json_or_none(body: bytes) -> Any:
    if not body:
        return None
    try:
        return json.loads(body)
    except ValueError:
        return None


def _reason(exc: BaseException) -> str:
    if isinstance(exc, http.client.RemoteDisconnected):
        return "it accepted the connection but closed it without answering (its log says why)"
    if isinstance(exc, ssl.SSLCertVerificationError) and exc.verify_code in (9, 10):
        # X509_V_ERR_CERT_NOT_YET_VALID, X509_V_ERR_CERT_HAS_EXPIRED: most often this machine's
        # clock, not the certificate
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        return (
            f"the server's certificate {exc.verify_message.removeprefix('certificate ')} by this"
            f" machine's clock ({now}); check the clock (timedatectl), and if it is right, the"
            " control plane's certificate"
        )
    if isinstance(exc, ssl.SSLCertVerificationError):
        return (
            f"the server's certificate is not trusted ({exc.verify_message}); "
            "give its CA with --control-plane-ca"
        )
    if isinstance(exc, socket.timeout):
        return "timed out"
    if isinstance(exc, socket.gaierror):
        return f"the host name does not resolve ({exc.strerror})"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or exc.__class__.__name__
