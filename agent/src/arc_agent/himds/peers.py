"""Which local user is on the other end of a loopback TCP connection.

himds listens on loopback, so every caller is a process of this machine, and the kernel knows
the uid that owns the caller's socket: the one whose local address is the peer address himds
sees and whose remote address is himds's. It is asked through netlink ``sock_diag`` (an exact
lookup of that one socket, ``inet_diag_req_v2`` without ``NLM_F_DUMP``: tens of microseconds);
``/proc/net/tcp`` (``tcp6``), which lists every socket and takes milliseconds, is the fallback.
Looked up only when a caller asks for a new challenge (issue 10, finding 9: limits per caller,
so that one local user cannot use up what another needs).
"""

from __future__ import annotations

import ipaddress
import socket
import struct
from pathlib import Path

PROC_NET = Path("/proc/net")


def _hex_address(host: str, port: int) -> str:
    """``127.0.0.1``, 40342 as ``/proc/net/tcp`` writes it: ``0100007F:9D96``."""
    address = ipaddress.ip_address(host.split("%", 1)[0])
    packed = address.packed
    if address.version == 4:
        text = packed[::-1].hex().upper()
    else:  # four 32-bit words, each in host (little-endian) byte order
        text = "".join(packed[i : i + 4][::-1].hex().upper() for i in range(0, 16, 4))
    return f"{text}:{port:04X}"


NETLINK_SOCK_DIAG = 4
SOCK_DIAG_BY_FAMILY = 20
NLM_F_REQUEST = 1
NLMSG_ERROR = 2
INET_DIAG_NOCOOKIE = 0xFFFFFFFF
_REQUEST = struct.Struct("=IHHIIBBBBIHH16s16sIII")
"""nlmsghdr, then inet_diag_req_v2: family, protocol, ext, pad, states, and the socket id
(ports and addresses in network order, interface, cookie)."""
_UID_OFFSET = 16 + 4 + 48 + 12
"""nlmsghdr, inet_diag_msg's family/state/timer/retrans, its sockid, expires/rqueue/wqueue."""


def peer_uid(peer: tuple[str, int], server: tuple[str, int], proc_net: Path = PROC_NET) -> int | None:
    """The uid owning the socket at ``peer`` connected to ``server``; None if it is not found."""
    found = _netlink_uid(peer, server)
    return found if found is not None else _proc_uid(peer, server, proc_net)


def _netlink_uid(peer: tuple[str, int], server: tuple[str, int]) -> int | None:
    try:
        source = ipaddress.ip_address(peer[0].split("%", 1)[0])
        target = ipaddress.ip_address(server[0].split("%", 1)[0])
    except ValueError:
        return None
    family = socket.AF_INET6 if source.version == 6 else socket.AF_INET
    request = _REQUEST.pack(
        _REQUEST.size, SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST, 1, 0,
        family, socket.IPPROTO_TCP, 0, 0, 0xFFFFFFFF,
        socket.htons(peer[1]), socket.htons(server[1]),
        source.packed.ljust(16, b"\0"), target.packed.ljust(16, b"\0"),
        0, INET_DIAG_NOCOOKIE, INET_DIAG_NOCOOKIE,
    )  # fmt: skip
    try:
        with socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_SOCK_DIAG) as diag:
            diag.settimeout(1.0)
            diag.send(request)
            answer = diag.recv(8192)
    except OSError:
        return None
    if len(answer) < _UID_OFFSET + 4:
        return None
    message_type = struct.unpack_from("=H", answer, 4)[0]
    if message_type != SOCK_DIAG_BY_FAMILY:  # NLMSG_ERROR: no such socket (or no permission)
        return None
    uid: int = struct.unpack_from("=I", answer, _UID_OFFSET)[0]
    return uid


def _proc_uid(peer: tuple[str, int], server: tuple[str, int], proc_net: Path) -> int | None:
    try:
        version = ipaddress.ip_address(peer[0].split("%", 1)[0]).version
    except ValueError:
        return None
    local, remote = _hex_address(*peer), _hex_address(*server)
    tables = ("tcp6",) if version == 6 else ("tcp", "tcp6")  # an IPv4 peer may be v4-mapped in tcp6
    for table in tables:
        if table == "tcp6" and version == 4:
            local = _hex_address(f"::ffff:{peer[0]}", peer[1])
            remote = _hex_address(f"::ffff:{server[0]}", server[1])
        try:
            with (proc_net / table).open("r", encoding="ascii") as listing:
                next(listing, None)  # header
                for line in listing:
                    fields = line.split()
                    if len(fields) > 7 and fields[1] == local and fields[2] == remote:
                        return int(fields[7])
        except (OSError, ValueError):
            continue
    return None


def socket_peer_uid(connection: socket.socket) -> int | None:
    """:func:`peer_uid` of an accepted connection."""
    try:
        peer = connection.getpeername()
        server = connection.getsockname()
    except OSError:
        return None
    return peer_uid((str(peer[0]), int(peer[1])), (str(server[0]), int(server[1])))
