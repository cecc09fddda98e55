"""The host id: a stable fingerprint of this host that differs between clones.

docs/agent-protocol.md §2: the lower-case hex SHA-256 of ``/etc/machine-id``, a newline, and
the SMBIOS product UUID (``/sys/class/dmi/id/product_uuid``; when unreadable, the MAC address
of the first non-loopback interface). The machine id alone travels with a cloned disk; the
hypervisor gives each virtual machine its own product UUID.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from arc_agent.errors import AzcmError, ErrorCode


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="ascii", errors="replace").strip()
    except OSError:
        return ""


def _first_mac(net: Path) -> str:
    try:
        names = sorted(os.listdir(net))
    except OSError:
        return ""
    for name in names:
        if name == "lo":
            continue
        mac = _read(net / name / "address")
        if mac and mac != "00:00:00:00:00:00":
            return mac
    return ""


def host_id(root: Path = Path("/")) -> str:
    machine_id = _read(root / "etc" / "machine-id")
    if not machine_id:
        raise AzcmError(
            ErrorCode.INITIALIZATION_FAILED,
            "this host has no /etc/machine-id; create one with 'systemd-machine-id-setup'",
        )
    hardware = _read(root / "sys" / "class" / "dmi" / "id" / "product_uuid") or _first_mac(
        root / "sys" / "class" / "net"
    )
    return hashlib.sha256(f"{machine_id}\n{hardware}".encode()).hexdigest()
