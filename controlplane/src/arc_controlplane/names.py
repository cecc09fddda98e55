"""The names (DNS and IP) the generated server certificate must cover."""

from __future__ import annotations

import contextlib
import ipaddress
import re
import socket
from collections.abc import Callable, Iterable
from dataclasses import dataclass

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_LABEL = r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?"
_DNS_NAME = re.compile(rf"^(?:\*\.)?{_LABEL}(?:\.{_LABEL})*$")
LOOPBACK_IPS: tuple[IPAddress, ...] = (ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1"))


@dataclass(frozen=True)
class ServerNames:
    dns: frozenset[str]
    """Lower-case DNS names."""
    ips: frozenset[IPAddress]

    def missing_from(self, other: ServerNames) -> list[str]:
        """The names of ``self`` that ``other`` does not cover, for messages."""
        missing = sorted(self.dns - other.dns)
        missing += [str(ip) for ip in sorted(self.ips - other.ips, key=_ip_sort_key)]
        return missing


def _ip_sort_key(ip: IPAddress) -> tuple[int, int]:
    return ip.version, int(ip)


def parse_name(value: str) -> str | IPAddress:
    """An IP address or a DNS name (lower case); ``ValueError`` for anything else."""
    text = value.strip()
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        pass
    name = text.rstrip(".").lower()
    if len(name) > 253 or not _DNS_NAME.match(name):
        raise ValueError(f"{value!r} is neither an IP address nor a DNS name")
    return name


def local_addresses(hostname: str) -> set[IPAddress]:
    """The addresses ``hostname`` resolves to (cheap: no interface enumeration), plus loopback."""
    found: set[IPAddress] = set(LOOPBACK_IPS)
    try:
        infos = socket.getaddrinfo(hostname, None, type=socket.SOCK_STREAM)
    except OSError:
        return found
    for info in infos:
        address = str(info[4][0]).split("%", 1)[0]  # drop an IPv6 zone index
        try:
            found.add(ipaddress.ip_address(address))
        except ValueError:
            continue
    return found


def server_names(
    bind: str,
    hostname: str,
    extra: Iterable[str],
    addresses_of: Callable[[str], set[IPAddress]] = local_addresses,
) -> ServerNames:
    """Names for a server listening on ``bind`` on host ``hostname``, plus every ``--san``.

    Always ``localhost``, ``127.0.0.1`` and the host name (left out if it is not a valid DNS
    name); the bind address itself or, for ``0.0.0.0``/``::`` (all addresses), every address the
    host name resolves to plus ``127.0.0.1`` and ``::1``; then each of ``extra``.
    ``ValueError`` if ``bind`` or one of ``extra`` is neither an IP address nor a DNS name.
    """
    dns: set[str] = {"localhost"}
    ips: set[IPAddress] = {ipaddress.ip_address("127.0.0.1")}

    def add(name: str) -> None:
        parsed = parse_name(name)
        if isinstance(parsed, str):
            dns.add(parsed)
        else:
            ips.add(parsed)

    with contextlib.suppress(ValueError):
        add(hostname)
    bind_name = parse_name(bind)
    if not isinstance(bind_name, str) and bind_name.is_unspecified:
        ips |= addresses_of(hostname)
    else:
        add(bind)
    for name in extra:
        add(name)
    return ServerNames(dns=frozenset(dns), ips=frozenset(ips))
