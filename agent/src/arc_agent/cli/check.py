"""``azcmagent check``: can this machine reach its control plane? (docs/reference/azcmagent.md)

The real agent checks the Azure endpoints of its cloud and region (docs/reference/network.md).
This agent talks to
one control plane, so ``check`` probes that control plane's services, each at its own name when
the control plane gives them names (docs/endpoints.md): its health route, the OIDC discovery
document of the machine's tenant (when connected), the management metadata, the agent API,
notifications and machine configuration (and the extension packages with ``--extensions``). Each probe
takes its own connection through four steps, each bounded by ``STEP_TIMEOUT``: DNS resolution
of the host, TCP connect, TLS handshake (the server's certificate verified against the
control plane's CA) and one HTTP request. An endpoint whose group goes through a proxy
(``proxy.url`` or ``HTTPS_PROXY``, less ``proxy.bypass``: docs/proxy.md, as every other request
of the agent) is probed through it: DNS and TCP to the proxy, then a ``PROXY`` step (its answer
to ``CONNECT``), then TLS and HTTP inside the tunnel; the row names the proxy. A probe is
reachable when the endpoint answers with the status it should; the agent API is asked without
credentials, so its 401/400 counts as an answer. When a probe fails before HTTP (DNS, TCP,
PROXY, TLS), the later ones that go the same way are not tried, so the whole check stays within
a few steps' time.

Output: a table (``ENDPOINT REACHABLE TLS PROXY TIME NOTE``; the real agent's columns are
``ENDPOINT REACHABLE PRIVATE TLS PROXY``), or with ``-j``
``{"controlPlaneUrl", "caFile", "endpoints": [...], "allReachable"}``. The exit code is 0 when
every endpoint is reachable and 26 (AZCM0026, a network error) when one is not, with the table
(or the JSON) all the same. Needs no root.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import ipaddress
import json
import socket
import ssl
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from arc_agent.cli.connect import CLOUDS
from arc_agent.cli.context import Context
from arc_agent.cli.output import CommandResult
from arc_agent.config.connection import load_state
from arc_agent.config.settings import CONTROL_PLANE_CAFILE, CONTROL_PLANE_URL, LocalConfig
from arc_agent.cpclient.endpoints import Origin, endpoints, group_of
from arc_agent.cpclient.outbound import proxy_policy
from arc_agent.cpclient.proxy import Proxy, ProxyPolicy
from arc_agent.cpclient.tls import tls_context
from arc_agent.cpclient.transport import USER_AGENT, parse_base_url
from arc_agent.errors import AzcmError, ErrorCode
from arc_agent.paths import AgentPaths

STEP_TIMEOUT = 5.0
"""Seconds allowed to each step of a probe (DNS, TCP, TLS, HTTP)."""
MAX_BODY_BYTES = 64 * 1024
EXTENSIONS = ("all", "sql")
CONNECTION_STEPS = ("DNS", "TCP", "PROXY", "TLS")
"""A failure at one of these fails every endpoint of the host alike: the rest are not tried."""
HEADER = ("ENDPOINT", "REACHABLE", "TLS", "PROXY", "TIME", "NOTE")


@dataclass(frozen=True)
class Endpoint:
    path: str
    purpose: str
    method: str
    expected: frozenset[int]
    """The HTTP statuses that mean the endpoint answers as it should."""
    expected_text: str


@dataclass(frozen=True)
class Target:
    """What to check: the control plane's base URL, its CA, and the machine's tenant if known."""

    url: str
    ca_file: Path | None
    tenant_id: str
    named: dict[str, str] = field(default_factory=dict)
    """The services the control plane serves under their own names (the connection state's
    ``endpoints``, when it is the machine's own control plane; docs/endpoints.md)."""


@dataclass(frozen=True)
class Row:
    endpoint: str
    purpose: str
    reachable: bool
    tls: str = ""
    time_ms: int = 0
    http_status: int | None = None
    address: str = ""
    error: str = ""
    failed_step: str = ""
    """``DNS``, ``TCP``, ``PROXY``, ``TLS`` or ``HTTP`` when the probe failed there (not in the JSON)."""
    proxy: str = ""
    """The proxy the probe went through (``http://host:port``), or "" (direct)."""

    def to_json(self) -> dict[str, Any]:
        return {
            "endpoint": self.endpoint,
            "purpose": self.purpose,
            "reachable": self.reachable,
            "tls": self.tls,
            "timeMs": self.time_ms,
            "httpStatus": self.http_status,
            "address": self.address,
            "private": _is_private(self.address),
            "proxy": self.proxy,
            "error": self.error,
        }


class StepFailed(Exception):
    """A probe step (``DNS``, ``TCP``, ``TLS``, ``HTTP``) failed; ``reason`` says why."""

    def __init__(self, step: str, reason: str, address: str = "") -> None:
        super().__init__(f"{step}: {reason}")
        self.step = step
        self.reason = reason
        self.address = address


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--cloud",
        metavar="CLOUD",
        help=f"accepted for compatibility: {', '.join(CLOUDS)}",
    )
    parser.add_argument("-l", "--location", metavar="REGION", help="accepted for compatibility")
    parser.add_argument(
        "-e",
        "--extensions",
        choices=EXTENSIONS,
        help="also check the endpoints extensions need (the extension package service)",
    )
    parser.add_argument("--include-all", action="store_true", help="accepted for compatibility")
    parser.add_argument(
        "-p",
        "--enable-pls-check",
        action="store_true",
        help="accepted for compatibility; every row tells whether its address is private",
    )
    plane = parser.add_argument_group("control plane (hybridops.arc)")
    plane.add_argument(
        "--control-plane-url",
        metavar="URL",
        help="https://HOST[:PORT]; default: the connected one, else config controlplane.url",
    )
    plane.add_argument(
        "--control-plane-ca",
        metavar="FILE",
        help="its CA certificate (PEM); default: the connected one's, else config controlplane.cafile",
    )


def check(ctx: Context) -> CommandResult:
    _check_cloud(ctx.args)
    target = resolve_target(ctx.args, ctx.paths)
    rows = probe_all(target, extensions=bool(ctx.args.extensions), proxies=proxy_policy(ctx.paths))
    all_reachable = all(row.reachable for row in rows)
    data = {
        "controlPlaneUrl": target.url,
        "caFile": str(target.ca_file or ""),
        "endpoints": [row.to_json() for row in rows],
        "allReachable": all_reachable,
    }
    return CommandResult(
        text=render(rows), data=data, exit_code=0 if all_reachable else int(ErrorCode.NETWORK_ERROR)
    )


def _given(args: argparse.Namespace, name: str) -> str:
    value = getattr(args, name, None)
    return value.strip() if isinstance(value, str) else ""


def _check_cloud(args: argparse.Namespace) -> None:
    cloud = _given(args, "cloud")
    if cloud and cloud.lower() not in (known.lower() for known in CLOUDS):
        raise AzcmError(ErrorCode.INVALID_ARGUMENT, f"--cloud {cloud!r} is not one of {', '.join(CLOUDS)}")


def resolve_target(args: argparse.Namespace, paths: AgentPaths) -> Target:
    """The flags, else the connection state (with the CA copied at connect), else the config."""
    given_url = _given(args, "control_plane_url").rstrip("/")
    given_ca = _given(args, "control_plane_ca")
    state = load_state(paths.agent_config)
    config = LocalConfig.load(paths.local_config)
    configured_ca = str(config.get(CONTROL_PLANE_CAFILE) or "")
    if given_url:
        url, ca = given_url, given_ca or configured_ca
    elif state is not None:
        url = state.control_plane_url.rstrip("/")
        ca = given_ca or (str(paths.control_plane_ca) if paths.control_plane_ca.exists() else "")
    else:
        url = str(config.get(CONTROL_PLANE_URL) or "").rstrip("/")
        ca = given_ca or configured_ca
    if not url:
        raise AzcmError(
            ErrorCode.MISSING_MANDATORY_PARAMETER,
            "no control plane to check: this machine is not connected and none is configured; give "
            "--control-plane-url or set it once with 'azcmagent config set controlplane.url URL'",
        )
    parse_base_url(url)  # AZCM0023 for anything but https://HOST[:PORT]
    if state is not None and state.control_plane_url.rstrip("/").lower() == url.lower():
        # the OIDC row needs the machine's tenant; the services' names are its control plane's
        return Target(url, Path(ca) if ca else None, state.tenant_id, dict(state.endpoints))
    return Target(url=url, ca_file=Path(ca) if ca else None, tenant_id="")


NO_MACHINE = "00000000-0000-0000-0000-000000000000"
"""The machine a probe names where a route needs one: none, and without credentials anyway."""


def probes(tenant_id: str, extensions: bool = False) -> list[Endpoint]:
    """One request per service (docs/endpoints.md), asked without credentials where the service
    needs them: its refusal is its answer."""
    refused = frozenset({401})
    found = [Endpoint("/healthz", "control plane health", "GET", frozenset({200}), "200")]
    if tenant_id:
        found.append(
            Endpoint(
                f"/{tenant_id}/v2.0/.well-known/openid-configuration",
                "token service (OIDC discovery)",
                "GET",
                frozenset({200}),
                "200 with the tenant's discovery document",
            )
        )
    found.append(
        Endpoint(
            "/metadata/endpoints?api-version=2022-09-01",
            "management (ARM metadata)",
            "GET",
            frozenset({200}),
            "200 with the cloud's endpoints",
        )
    )
    found.append(
        Endpoint(
            "/agent/v1/register",
            "agent API",
            "POST",
            frozenset({400, 401, 403, 415, 422}),
            "401 or 400 (the request carries no credentials)",
        )
    )
    machine = f"/agent/v1/machines/{NO_MACHINE}"
    no_credentials = "401 (the request carries no machine credentials)"
    for path, purpose in (
        (f"{machine}/notifications?generation=0&wait=1", "notifications"),
        (f"{machine}/guestConfigurationAssignments", "machine configuration"),
    ):
        found.append(Endpoint(path, purpose, "GET", refused, no_credentials))
    if extensions:
        found.append(
            Endpoint(
                "/agent/v1/packageSigningKey",
                "extension packages",
                "GET",
                frozenset({401}),
                "401 (the request carries no machine credentials)",
            )
        )
    return found


def probe_all(target: Target, extensions: bool = False, proxies: ProxyPolicy | None = None) -> list[Row]:
    parts = parse_base_url(target.url)
    where = endpoints(f"https://{parts.netloc}", target.named)
    context = tls_context(target.ca_file)
    policy = proxies or ProxyPolicy(None)
    rows: list[Row] = []
    failures: dict[tuple[Origin, Proxy | None], str] = {}
    for endpoint in probes(target.tenant_id, extensions):
        origin = where.origin_of(endpoint.path)
        url = origin.url + endpoint.path
        proxy = policy.route(group_of(endpoint.path), origin.host)
        if (origin, proxy) in failures:  # the same way failed before: it fails alike
            failed = failures[(origin, proxy)]
            rows.append(Row(url, endpoint.purpose, False, error=f"not tried: {failed}", proxy=_shown(proxy)))
            continue
        row = probe(url, endpoint, origin.host, origin.port, context, proxy)
        if row.failed_step in CONNECTION_STEPS:
            way = f" through {proxy.display}" if proxy else ""
            failures[(origin, proxy)] = (
                f"the connection to {origin.url.removeprefix('https://')}{way} failed at {row.failed_step}"
                " (see above)"
            )
        rows.append(row)
    return rows


def _shown(proxy: Proxy | None) -> str:
    return proxy.display if proxy else ""


def probe(
    url: str, endpoint: Endpoint, host: str, port: int, context: ssl.SSLContext, proxy: Proxy | None = None
) -> Row:
    started = time.monotonic()
    tls = address = ""
    try:
        if proxy is None:
            sock, address = connect_tcp(resolve(host, port, STEP_TIMEOUT), STEP_TIMEOUT)
        else:
            sock, address = connect_tcp(resolve(proxy.host, proxy.port, STEP_TIMEOUT), STEP_TIMEOUT, proxy)
            tunnel(sock, host, port, proxy, STEP_TIMEOUT, address)
        tls_sock = handshake(sock, host, context, STEP_TIMEOUT, address)
        tls = tls_sock.version() or ""
        status, detail = http_request(tls_sock, host, port, context, endpoint, STEP_TIMEOUT, address)
    except StepFailed as failed:
        return Row(
            url, endpoint.purpose, False, tls, _ms(started), None, failed.address, str(failed), failed.step,
            _shown(proxy),
        )  # fmt: skip
    reachable = status in endpoint.expected
    error = ""
    if not reachable:
        error = f"HTTP: answered {status}, expected {endpoint.expected_text}" + (
            f": {detail}" if detail else ""
        )
    return Row(
        url, endpoint.purpose, reachable, tls, _ms(started), status, address, error, proxy=_shown(proxy)
    )


def tunnel(sock: socket.socket, host: str, port: int, proxy: Proxy, timeout: float, address: str) -> None:
    """Ask the proxy for a tunnel to ``host:port`` (``CONNECT``); StepFailed ``PROXY`` unless it
    answers 2xx."""
    authority = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    lines = [f"CONNECT {authority} HTTP/1.1", f"Host: {authority}", f"User-Agent: {USER_AGENT}"]
    if proxy.authorization:
        lines.append(f"Proxy-Authorization: {proxy.authorization}")
    with _deadline(sock, timeout) as expired:
        try:
            sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("ascii"))
            answer = b""
            while b"\r\n\r\n" not in answer and len(answer) < 16384:
                chunk = sock.recv(1)  # byte by byte: nothing of the tunnel may be read here
                if not chunk:
                    break
                answer += chunk
        except OSError as exc:
            sock.close()
            reason = f"no answer within {timeout:g} s" if expired.is_set() else _os_reason(exc, timeout)
            raise StepFailed("PROXY", f"{proxy.display} ({proxy.source}): {reason}", address) from None
    status_line = answer.split(b"\r\n", 1)[0].decode("latin-1")
    parts = status_line.split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].startswith("2"):
        sock.close()
        said = status_line or "the connection was closed"
        raise StepFailed(
            "PROXY",
            f"{proxy.display} ({proxy.source}) refused the tunnel to {authority}: {said}; check that it"
            " lets this machine CONNECT to the control plane (and its credentials, if it asks for some)",
            address,
        )


def _ms(started: float) -> int:
    return round((time.monotonic() - started) * 1000)


def resolve(host: str, port: int, timeout: float) -> list[tuple[int, Any]]:
    """The (family, sockaddr) of ``host``, in resolver order, within ``timeout`` seconds."""
    found: list[tuple[int, Any]] = []
    errors: list[OSError] = []

    def work() -> None:
        try:
            for family, _, _, _, sockaddr in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM):
                if (family, sockaddr) not in found:
                    found.append((family, sockaddr))
        except OSError as exc:
            errors.append(exc)

    # getaddrinfo() has no timeout of its own: run it aside and stop waiting when the time is up.
    worker = threading.Thread(target=work, name="check-dns", daemon=True)
    worker.start()
    worker.join(timeout)
    if worker.is_alive():
        raise StepFailed("DNS", f"{host} did not resolve within {timeout:g} s; check the DNS servers")
    if errors:
        reason = errors[0].strerror or str(errors[0])
        raise StepFailed("DNS", f"{host} does not resolve ({reason}); check the host name and DNS")
    if not found:
        raise StepFailed("DNS", f"{host} has no address")
    return found


def connect_tcp(
    addresses: Sequence[tuple[int, Any]], timeout: float, proxy: Proxy | None = None
) -> tuple[socket.socket, str]:
    """A TCP connection to the first address that accepts (of the control plane, or of
    ``proxy``), all of them within ``timeout``."""
    deadline = time.monotonic() + timeout
    failures: list[str] = []
    for family, sockaddr in addresses:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.settimeout(remaining)
        try:
            sock.connect(sockaddr)
        except OSError as exc:
            sock.close()
            failures.append(f"{sockaddr[0]} port {sockaddr[1]}: {_os_reason(exc, timeout)}")
            continue
        return sock, str(sockaddr[0])
    reason = "; ".join(failures) or f"timed out after {timeout:g} s"
    address = str(addresses[0][1][0]) if addresses else ""
    if proxy is not None:
        raise StepFailed(
            "TCP", f"the proxy {proxy.display} ({proxy.source}): {reason}; check that it runs", address
        )
    raise StepFailed("TCP", f"{reason}; check that the control plane runs and the firewall", address)


@contextlib.contextmanager
def _deadline(sock: socket.socket, timeout: float) -> Iterator[threading.Event]:
    """Shut ``sock`` down when ``timeout`` passes: bounds a step that reads many times.

    The event is set when the time ran out (the step's error is then a timeout).
    """
    expired = threading.Event()

    def expire() -> None:
        expired.set()
        with contextlib.suppress(OSError):
            socket.socket.shutdown(sock, socket.SHUT_RDWR)  # the TCP socket, under any TLS layer

    timer = threading.Timer(timeout, expire)
    timer.daemon = True
    timer.start()
    try:
        yield expired
    finally:
        timer.cancel()


def handshake(
    sock: socket.socket, host: str, context: ssl.SSLContext, timeout: float, address: str
) -> ssl.SSLSocket:
    """The TLS session, the server's certificate verified (chain and host name)."""
    sock.settimeout(timeout)
    try:
        tls_sock = context.wrap_socket(sock, server_hostname=host, do_handshake_on_connect=False)
    except (OSError, ValueError) as exc:
        sock.close()
        raise StepFailed("TLS", str(exc), address) from None
    with _deadline(tls_sock, timeout) as expired:
        try:
            tls_sock.do_handshake()
        except ssl.SSLCertVerificationError as exc:
            tls_sock.close()
            raise StepFailed(
                "TLS",
                f"the server's certificate is not trusted ({exc.verify_message}); give the control "
                "plane's CA with --control-plane-ca or 'azcmagent config set controlplane.cafile FILE'",
                address,
            ) from None
        except (OSError, ValueError) as exc:
            tls_sock.close()
            reason = f"timed out after {timeout:g} s" if expired.is_set() else _tls_reason(exc, timeout)
            raise StepFailed("TLS", f"handshake failed: {reason}", address) from None
    return tls_sock


def http_request(
    tls_sock: ssl.SSLSocket,
    host: str,
    port: int,
    context: ssl.SSLContext,
    endpoint: Endpoint,
    timeout: float,
    address: str,
) -> tuple[int, str]:
    """Send the endpoint's request over the open session; the answer's status and error text."""
    connection = http.client.HTTPSConnection(host, port, timeout=timeout, context=context)
    connection.sock = tls_sock  # the session of the earlier steps; http.client does not reconnect
    headers = {"User-Agent": USER_AGENT, "Accept": "application/json"}
    body = b"" if endpoint.method == "POST" else None
    with _deadline(tls_sock, timeout) as expired:
        try:
            connection.request(endpoint.method, endpoint.path, body=body, headers=headers)
            response = connection.getresponse()
            body_read = response.read(MAX_BODY_BYTES)
        except (OSError, http.client.HTTPException) as exc:
            if expired.is_set():
                reason = f"no answer within {timeout:g} s"
            elif isinstance(exc, OSError):
                reason = _os_reason(exc, timeout)
            else:
                reason = f"not an HTTP answer ({exc.__class__.__name__}); is this the control plane's URL?"
            raise StepFailed("HTTP", reason, address) from None
        finally:
            connection.close()
    if expired.is_set():  # cut short: what was read ends early and proves nothing
        raise StepFailed("HTTP", f"no answer within {timeout:g} s", address)
    return response.status, error_detail(body_read)


def error_detail(body: bytes) -> str:
    """The message of an ARM error body or the first line of an OAuth ``error_description``."""
    try:
        document = json.loads(body)
    except ValueError:
        return ""
    if not isinstance(document, dict):
        return ""
    error = document.get("error")
    if isinstance(error, dict):
        text = str(error.get("message", ""))
    else:
        text = str(document.get("error_description", "")).split("\r\n", 1)[0]
    return text[:300]


def _os_reason(exc: OSError, timeout: float) -> str:
    if isinstance(exc, socket.timeout):
        return f"timed out after {timeout:g} s"
    return exc.strerror or str(exc) or exc.__class__.__name__


def _tls_reason(exc: BaseException, timeout: float) -> str:
    if isinstance(exc, ssl.SSLError):
        return exc.reason or str(exc)
    if isinstance(exc, OSError):
        return _os_reason(exc, timeout)
    return str(exc)


def _is_private(address: str) -> bool:
    try:
        return ipaddress.ip_address(address.split("%", 1)[0]).is_private
    except ValueError:
        return False


def render(rows: Sequence[Row]) -> str:
    table = [HEADER] + [
        (
            row.endpoint,
            "true" if row.reachable else "false",
            row.tls or "-",
            row.proxy or "-",
            f"{row.time_ms} ms",
            row.error or f"HTTP {row.http_status} from {row.address}",
        )
        for row in rows
    ]
    widths = [max(len(line[column]) for line in table) for column in range(len(HEADER) - 1)]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths)) + "  " + line[-1] for line in table
    ]
    unreachable = sum(1 for row in rows if not row.reachable)
    if unreachable:
        lines.append(f"{unreachable} of {len(rows)} endpoints are not reachable.")
    else:
        lines.append(f"All {len(rows)} endpoints are reachable.")
    return "\n".join(lines)
