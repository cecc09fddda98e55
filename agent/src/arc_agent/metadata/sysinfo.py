"""What this machine is: OS, host names, hardware, firmware, network (docs/reference/metadata.md).

Collected once (at ``azcmagent connect`` and when himds starts or is asked to refresh), from
files under a root directory (``/`` on a real host; a fixture tree in tests): ``/etc/os-release``,
``/proc`` (CPUs, memory, kernel, host name, addresses), ``/sys`` (DMI, firmware, network
interfaces). Interface addresses come from ``ip -json addr`` when the root is ``/`` and ``ip``
exists, else from ``/proc/net/if_inet6``, ``/proc/net/fib_trie`` and ``/proc/net/route``.
Anything missing or unreadable is left empty: a machine without DMI (a container, some ARM
boards) is still a machine. The FQDN lookup is bounded in time, so a broken resolver never
stalls the caller.

``SystemInfo.to_arm()`` maps the result to the ARM ``MachineProperties`` keys the agent may
report (docs/agent-protocol.md §5.1). The ``detectedProperties`` key names are ours (Azure's
are not public, docs/reference/not-public.md) and follow the spelling seen in ARM examples where one exists.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import re
import shlex
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from arc_agent.systemd import which

if TYPE_CHECKING:  # pragma: no cover
    from arc_agent.metadata.cloud import CloudInfo

FQDN_TIMEOUT_SECONDS = 2.0
IP_COMMAND_TIMEOUT_SECONDS = 5.0
MAX_FILE_BYTES = 1024 * 1024
ARP_LOOPBACK = 772  # /sys/class/net/<if>/type of a loopback interface
SECURE_BOOT_VARIABLE = "SecureBoot-8be4df61-93ca-11d2-aa0d-00e098032b8c"

# Limits of the control plane's report model (docs/agent-protocol.md §5.1).
MAX_TEXT = 256
MAX_DETECTED_VALUE = 1024
MAX_LIST = 256

IpJsonSource = Callable[[], "str | None"]
FqdnLookup = Callable[[str], str]


@dataclass(frozen=True)
class IpAddress:
    address: str
    prefix: int
    version: int
    """4 or 6."""

    @property
    def network(self) -> str:
        """The subnet's address, e.g. ``10.0.0.0`` for ``10.0.0.4/24``."""
        return str(ipaddress.ip_interface(f"{self.address}/{self.prefix}").network.network_address)

    @property
    def cidr(self) -> str:
        return str(ipaddress.ip_interface(f"{self.address}/{self.prefix}").network)


@dataclass(frozen=True)
class NetworkInterface:
    name: str
    index: int
    """The kernel's interface index; 0 when unknown."""
    mac_address: str
    """As the kernel writes it: ``52:54:00:12:34:56``; empty when the interface has none."""
    addresses: tuple[IpAddress, ...]


@dataclass(frozen=True)
class Processor:
    """One CPU socket."""

    name: str
    cores: int


@dataclass(frozen=True)
class SystemInfo:
    os_name: str
    """``NAME`` of os-release, e.g. ``Debian GNU/Linux``."""
    os_id: str
    os_version: str
    """``VERSION_ID`` of os-release, e.g. ``12``."""
    os_pretty_name: str
    """``PRETTY_NAME`` of os-release, e.g. ``Debian GNU/Linux 12 (bookworm)``."""
    kernel_name: str
    kernel_release: str
    architecture: str
    hostname: str
    fqdn: str
    domain_name: str
    manufacturer: str
    model: str
    bios_uuid: str
    """SMBIOS UUID (``product_uuid``), lower case; empty when unknown."""
    serial_number: str
    asset_tag: str
    firmware_type: str
    """``UEFI`` or ``BIOS``."""
    secure_boot: bool | None
    """None when the firmware does not say (BIOS, or efivars not mounted)."""
    tpm_present: bool
    processors: tuple[Processor, ...]
    """One entry per socket."""
    logical_processors: int
    memory_bytes: int
    interfaces: tuple[NetworkInterface, ...] = field(default_factory=tuple)

    @property
    def cpu_sockets(self) -> int:
        return len(self.processors)

    @property
    def cpu_cores(self) -> int:
        return sum(processor.cores for processor in self.processors)

    def to_arm(self, cloud: CloudInfo | None = None) -> dict[str, Any]:
        """The ARM ``MachineProperties`` keys the agent reports (register, heartbeat changes)."""
        properties: dict[str, Any] = {
            "osName": (self.kernel_name or "Linux").lower(),
            "osType": "linux",
            "osVersion": self.kernel_release,
            "osSku": self.os_pretty_name,
            "machineFqdn": self.fqdn,
            "displayName": self.hostname,
            "domainName": self.domain_name,
            "dnsFqdn": self.fqdn,
        }
        properties = {key: _text(value) for key, value in properties.items() if value}
        if _is_guid(self.bios_uuid):
            properties["vmUuid"] = self.bios_uuid
        properties["detectedProperties"] = self._detected_properties(cloud)
        hardware: dict[str, Any] = {}
        if self.memory_bytes:
            hardware["totalPhysicalMemoryInBytes"] = self.memory_bytes
        if self.processors:
            hardware["numberOfCpuSockets"] = self.cpu_sockets
            hardware["processors"] = [
                {"name": _text(processor.name), "numberOfCores": processor.cores}
                for processor in self.processors[:MAX_LIST]
            ]
        if hardware:
            properties["hardwareProfile"] = hardware
        properties["networkProfile"] = {
            "networkInterfaces": [_arm_interface(interface) for interface in self.interfaces[:MAX_LIST]]
        }
        firmware = {"serialNumber": _text(self.serial_number), "type": self.firmware_type}
        properties["firmwareProfile"] = {key: value for key, value in firmware.items() if value}
        if cloud is not None:
            properties["cloudMetadata"] = {"provider": cloud.provider}
        return properties

    def _detected_properties(self, cloud: CloudInfo | None) -> dict[str, str]:
        memory_gib = self.memory_bytes / 2**30
        detected = {
            "manufacturer": self.manufacturer,
            "model": self.model,
            "serialNumber": self.serial_number,
            "smbiosAssetTag": self.asset_tag,
            "processorNames": ", ".join(sorted({p.name for p in self.processors if p.name})),
            "processorCount": str(self.cpu_sockets) if self.processors else "",
            "coreCount": str(self.cpu_cores) if self.processors else "",
            "logicalCoreCount": str(self.logical_processors) if self.logical_processors else "",
            "totalPhysicalMemoryInBytes": str(self.memory_bytes) if self.memory_bytes else "",
            "totalPhysicalMemoryInGigabytes": str(round(memory_gib)) if self.memory_bytes else "",
            "osDistribution": self.os_id,
            "osDistributionVersion": self.os_version,
            "architecture": self.architecture,
            "firmwareType": self.firmware_type,
            "secureBootEnabled": "" if self.secure_boot is None else str(self.secure_boot).lower(),
            "tpmPresent": str(self.tpm_present).lower(),
        }
        if cloud is not None:
            detected["cloudprovider"] = cloud.provider
            detected.update(cloud.detected_properties())
        kept = [(key, value) for key, value in detected.items() if value][:MAX_LIST]
        return {_text(key): value[:MAX_DETECTED_VALUE] for key, value in kept}


def _arm_interface(interface: NetworkInterface) -> dict[str, Any]:
    document: dict[str, Any] = {"name": _text(interface.name)}
    if interface.index:
        document["id"] = str(interface.index)
    if interface.mac_address:
        document["macAddress"] = _text(interface.mac_address)
    document["ipAddresses"] = [
        {
            "address": address.address,
            "ipAddressVersion": f"IPv{address.version}",
            "subnet": {"addressPrefix": address.cidr},
        }
        for address in interface.addresses[:MAX_LIST]
    ]
    return document


def _text(value: str) -> str:
    return value[:MAX_TEXT]


_GUID = re.compile(r"[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}")


def _is_guid(value: str) -> bool:
    """``8-4-4-4-12`` hex digits, as SMBIOS gives it (``uuid`` would cost himds ``platform``)."""
    return _GUID.fullmatch(value) is not None


# --- collection ---------------------------------------------------------------------------------


def collect_system_info(
    root: Path = Path("/"),
    *,
    ip_json: IpJsonSource | None = None,
    fqdn_lookup: FqdnLookup = socket.getfqdn,
    fqdn_timeout: float = FQDN_TIMEOUT_SECONDS,
) -> SystemInfo:
    """Describe the machine whose ``/etc``, ``/proc`` and ``/sys`` are under ``root``.

    ``ip_json`` gives the output of ``ip -json addr`` (None: not available); by default ``ip``
    is run when ``root`` is ``/`` (another root has no ``ip`` to ask). ``fqdn_lookup`` resolves
    the host name to its FQDN and is given ``fqdn_timeout`` seconds at most.
    """
    release = parse_os_release(_read(root / "etc/os-release") or _read(root / "usr/lib/os-release"))
    uname = os.uname()
    hostname = _read(root / "proc/sys/kernel/hostname") or uname.nodename
    fqdn = resolve_fqdn(hostname, fqdn_lookup, fqdn_timeout)
    dmi = root / "sys/class/dmi/id"
    processors, logical = parse_cpuinfo(_read(root / "proc/cpuinfo"))
    source = ip_json if ip_json is not None else _ip_command_for(root)
    return SystemInfo(
        os_name=release.get("NAME", ""),
        os_id=release.get("ID", ""),
        os_version=release.get("VERSION_ID", ""),
        os_pretty_name=release.get("PRETTY_NAME", ""),
        kernel_name=_read(root / "proc/sys/kernel/ostype") or uname.sysname,
        kernel_release=_read(root / "proc/sys/kernel/osrelease") or uname.release,
        architecture=uname.machine,
        hostname=hostname,
        fqdn=fqdn,
        domain_name=domain_of(fqdn),
        manufacturer=_read(dmi / "sys_vendor"),
        model=_read(dmi / "product_name"),
        bios_uuid=_read(dmi / "product_uuid").lower(),
        serial_number=_read(dmi / "product_serial"),
        asset_tag=_read(dmi / "chassis_asset_tag"),
        firmware_type="UEFI" if (root / "sys/firmware/efi").is_dir() else "BIOS",
        secure_boot=_secure_boot(root / "sys/firmware/efi/efivars" / SECURE_BOOT_VARIABLE),
        tpm_present=(root / "sys/class/tpm/tpm0").exists(),
        processors=processors,
        logical_processors=logical,
        memory_bytes=parse_meminfo(_read(root / "proc/meminfo")),
        interfaces=collect_interfaces(root, source),
    )


def _read(path: Path) -> str:
    """The file's text, stripped; empty when it is missing, unreadable or not text."""
    try:
        with open(path, "rb") as stream:
            data = stream.read(MAX_FILE_BYTES)
    except OSError:
        return ""
    try:
        return data.decode("utf-8").strip().replace("\x00", "")
    except UnicodeDecodeError:
        return ""


def parse_os_release(text: str) -> dict[str, str]:
    """``KEY=value`` lines of os-release(5), shell quoting removed; malformed lines skipped."""
    values: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, raw = line.partition("=")
        try:
            words = shlex.split(raw)
        except ValueError:
            continue
        values[key.strip()] = " ".join(words)
    return values


def resolve_fqdn(hostname: str, lookup: FqdnLookup, timeout: float) -> str:
    """``lookup(hostname)`` if it answers within ``timeout`` seconds with a name, else the host name.

    The lookup runs on a daemon thread: a resolver that hangs is left behind, not waited for.
    """
    answers: list[str] = []

    def run() -> None:
        with contextlib.suppress(OSError, UnicodeError, ValueError):
            answers.append(lookup(hostname))

    thread = threading.Thread(target=run, name="fqdn-lookup", daemon=True)
    thread.start()
    thread.join(timeout)
    answer = answers[0].strip().rstrip(".") if answers else ""
    if not answer or (answer.split(".")[0] == "localhost" and not hostname.startswith("localhost")):
        return hostname
    return answer


def domain_of(fqdn: str) -> str:
    """``example.net`` for ``web-01.example.net``; empty for a bare name or an address."""
    try:
        ipaddress.ip_address(fqdn)
        return ""
    except ValueError:
        pass
    _, _, domain = fqdn.partition(".")
    return domain


def parse_cpuinfo(text: str) -> tuple[tuple[Processor, ...], int]:
    """Sockets (with their model name and physical cores) and the number of logical CPUs.

    ``physical id`` names the socket and ``core id`` the core within it; kernels that write
    neither (many ARM boards, some hypervisors) give one socket with one core per logical CPU.
    """
    logical = 0
    sockets: dict[str, set[str]] = {}
    names: dict[str, str] = {}
    global_name = ""
    for block in text.split("\n\n"):
        entry: dict[str, str] = {}
        for line in block.splitlines():
            key, separator, value = line.partition(":")
            if separator:
                entry.setdefault(key.strip().lower(), value.strip())
        if "processor" not in entry or not entry["processor"].isdigit():
            # ARM kernels put "Processor : <model>" or "Hardware" in a block of their own.
            global_name = global_name or entry.get("model name", "") or entry.get("processor", "")
            continue
        logical += 1
        socket_id = entry.get("physical id", "0")
        core_id = entry.get("core id", f"cpu{entry['processor']}")
        sockets.setdefault(socket_id, set()).add(core_id)
        name = entry.get("model name") or entry.get("cpu model") or entry.get("cpu") or ""
        names.setdefault(socket_id, name)
    processors = tuple(
        Processor(name=names.get(socket_id) or global_name, cores=len(cores))
        for socket_id, cores in sorted(sockets.items(), key=lambda item: _natural(item[0]))
    )
    return processors, logical


def _natural(value: str) -> tuple[int, str]:
    return (int(value), "") if value.isdigit() else (sys.maxsize, value)


def parse_meminfo(text: str) -> int:
    """``MemTotal`` in bytes; 0 when absent."""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "MemTotal":
            words = value.split()
            if words and words[0].isdigit():
                unit = words[1].lower() if len(words) > 1 else "kb"
                return int(words[0]) * (1024 if unit == "kb" else 1)
    return 0


def _secure_boot(variable: Path) -> bool | None:
    """The efivars SecureBoot variable: 4 bytes of attributes, then 1 (on) or 0 (off)."""
    try:
        data = variable.read_bytes()
    except OSError:
        return None
    return data[4] == 1 if len(data) >= 5 else None


# --- network interfaces -------------------------------------------------------------------------


def _ip_command_for(root: Path) -> IpJsonSource:
    def run_ip() -> str | None:
        if root != Path("/"):
            return None
        command = which("ip") or next(
            (path for path in ("/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip") if os.access(path, os.X_OK)), None
        )
        if command is None:
            return None
        try:
            result = subprocess.run(  # noqa: S603 - a fixed argv of ours, no shell
                [command, "-json", "addr", "show"],
                capture_output=True,
                text=True,
                timeout=IP_COMMAND_TIMEOUT_SECONDS,
                check=False,
                env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C"},
            )
        except (OSError, subprocess.SubprocessError):
            return None
        return result.stdout if result.returncode == 0 else None

    return run_ip


def collect_interfaces(root: Path, ip_json: IpJsonSource) -> tuple[NetworkInterface, ...]:
    """Non-loopback interfaces with at least one address that is not link-local."""
    text = ip_json()
    parsed = parse_ip_json(text) if text else None
    raw = parsed if parsed is not None else _interfaces_from_proc(root)
    interfaces = []
    for name, index, mac, addresses in raw:
        if _is_loopback(root, name):
            continue
        usable = tuple(sorted((a for a in addresses if _reportable(a)), key=lambda a: a.version))
        if not usable:
            continue
        sysfs_mac = _read(root / "sys/class/net" / name / "address")
        interfaces.append(NetworkInterface(name, index, sysfs_mac or mac, usable))
    return tuple(sorted(interfaces, key=lambda interface: (interface.index or sys.maxsize, interface.name)))


RawInterface = tuple[str, int, str, list[IpAddress]]


def parse_ip_json(text: str) -> list[RawInterface] | None:
    """``ip -json addr`` output; None when it is not that."""
    try:
        document = json.loads(text)
    except ValueError:
        return None
    if not isinstance(document, list):
        return None
    interfaces: list[RawInterface] = []
    for link in document:
        if not isinstance(link, Mapping) or not isinstance(link.get("ifname"), str):
            continue
        flags = link.get("flags")
        if link.get("link_type") == "loopback" or (isinstance(flags, list) and "LOOPBACK" in flags):
            continue
        index = link.get("ifindex")
        mac = link.get("address")
        addresses: list[IpAddress] = []
        infos = link.get("addr_info")
        for info in infos if isinstance(infos, list) else []:
            if not isinstance(info, Mapping):
                continue
            address = _ip_address(info.get("local"), info.get("prefixlen"))
            if address is not None:
                addresses.append(address)
        interfaces.append(
            (
                link["ifname"],
                index if isinstance(index, int) else 0,
                mac if isinstance(mac, str) and link.get("link_type") == "ether" else "",
                addresses,
            )
        )
    return interfaces


def _ip_address(address: object, prefix: object) -> IpAddress | None:
    if not isinstance(address, str) or not isinstance(prefix, int) or isinstance(prefix, bool):
        return None
    try:
        parsed = ipaddress.ip_interface(f"{address}/{prefix}")
    except ValueError:
        return None
    return IpAddress(str(parsed.ip), prefix, parsed.version)


def _reportable(address: IpAddress) -> bool:
    ip = ipaddress.ip_address(address.address)
    return not (ip.is_loopback or ip.is_link_local or ip.is_unspecified or ip.is_multicast)


def _is_loopback(root: Path, name: str) -> bool:
    kind = _read(root / "sys/class/net" / name / "type")
    return name == "lo" or kind == str(ARP_LOOPBACK)


def _interfaces_from_proc(root: Path) -> list[RawInterface]:
    """Without ``ip``: names and indexes from /sys, IPv6 from if_inet6, IPv4 from fib_trie + route."""
    addresses: dict[str, list[IpAddress]] = {}
    for name, address in _ipv6_from_proc(_read(root / "proc/net/if_inet6")):
        addresses.setdefault(name, []).append(address)
    routes = _routes(_read(root / "proc/net/route"))
    for local in _local_ipv4(_read(root / "proc/net/fib_trie")):
        match = _route_for(local, routes)
        if match is not None:
            name, prefix = match
            addresses.setdefault(name, []).append(IpAddress(str(local), prefix, 4))
    names = set(addresses)
    with contextlib.suppress(OSError):
        names.update(entry.name for entry in (root / "sys/class/net").iterdir())
    interfaces: list[RawInterface] = []
    for name in sorted(names):
        index = _read(root / "sys/class/net" / name / "ifindex")
        interfaces.append((name, int(index) if index.isdigit() else 0, "", addresses.get(name, [])))
    return interfaces


def _ipv6_from_proc(text: str) -> Iterable[tuple[str, IpAddress]]:
    # <32 hex address> <ifindex> <prefix length> <scope> <flags> <name>, numbers in hex
    for line in text.splitlines():
        words = line.split()
        if len(words) != 6 or len(words[0]) != 32:
            continue
        try:
            address = ipaddress.IPv6Address(bytes.fromhex(words[0]))
            prefix = int(words[2], 16)
        except ValueError:
            continue
        if prefix <= 128:
            yield words[5], IpAddress(str(address), prefix, 6)


def _local_ipv4(text: str) -> list[ipaddress.IPv4Address]:
    """Addresses of this host: the ``|-- a.b.c.d`` leaves followed by ``/32 host LOCAL``."""
    found: list[ipaddress.IPv4Address] = []
    last: ipaddress.IPv4Address | None = None
    for line in text.splitlines():
        words = line.split()
        if len(words) == 2 and words[0] == "|--":
            try:
                last = ipaddress.IPv4Address(words[1])
            except ValueError:
                last = None
        elif last is not None and words[:3] == ["/32", "host", "LOCAL"] and last not in found:
            found.append(last)
    return found


def _routes(text: str) -> list[tuple[str, int, int]]:
    """Directly connected routes of /proc/net/route: (interface, network, mask), host byte order."""
    routes = []
    for line in text.splitlines()[1:]:
        words = line.split()
        if len(words) < 8 or words[0] == "*":
            continue
        try:
            destination, gateway, mask = (_route_word(word) for word in (words[1], words[2], words[7]))
        except ValueError:
            continue
        if gateway == 0 and mask != 0:
            routes.append((words[0], destination, mask))
    return routes


def _route_word(word: str) -> int:
    """An address of /proc/net/route: the network-order bytes printed as a native integer."""
    return int.from_bytes(int(word, 16).to_bytes(4, sys.byteorder), "big")


def _route_for(address: ipaddress.IPv4Address, routes: list[tuple[str, int, int]]) -> tuple[str, int] | None:
    value = int(address)
    best: tuple[str, int] | None = None
    for name, network, mask in routes:
        prefix = bin(mask).count("1")
        if value & mask == network and (best is None or prefix > best[1]):
            best = (name, prefix)
    return best
