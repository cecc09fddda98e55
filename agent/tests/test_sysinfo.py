from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from arc_agent.metadata.cloud import CloudInfo
from arc_agent.metadata.sysinfo import (
    SECURE_BOOT_VARIABLE,
    IpAddress,
    SystemInfo,
    collect_system_info,
    domain_of,
    parse_cpuinfo,
    parse_meminfo,
    parse_os_release,
    resolve_fqdn,
)

OS_RELEASE = """\
PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"
NAME="Debian GNU/Linux"
VERSION_ID="12"
VERSION="12 (bookworm)"
ID=debian
# a comment
HOME_URL='https://www.debian.org/'
broken line
"""

# Two sockets, two cores each, two threads per core.
CPUINFO = "\n\n".join(
    f"processor\t: {n}\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Xeon(R) Gold 6230 CPU @ 2.10GHz\n"
    f"physical id\t: {n // 4}\nsiblings\t: 4\ncore id\t\t: {(n // 2) % 2}\ncpu cores\t: 2\nflags\t\t: fpu vme"
    for n in range(8)
)

# Without physical id / core id (an ARM board): one socket, a core per CPU.
CPUINFO_ARM = (
    "processor\t: 0\nBogoMIPS\t: 108.00\nCPU part\t: 0xd08\n\n"
    "processor\t: 1\nBogoMIPS\t: 108.00\nCPU part\t: 0xd08\n\n"
    "Hardware\t: BCM2835\nModel\t\t: Raspberry Pi 4 Model B Rev 1.4\n"
)

MEMINFO = "MemTotal:       16314564 kB\nMemFree:         1134452 kB\n"

BIOS_UUID = "4C4C4544-0042-3510-8056-B4C04F4E3732"

IP_JSON = json.dumps(
    [
        {
            "ifindex": 1,
            "ifname": "lo",
            "flags": ["LOOPBACK", "UP"],
            "link_type": "loopback",
            "address": "00:00:00:00:00:00",
            "addr_info": [{"family": "inet", "local": "127.0.0.1", "prefixlen": 8, "scope": "host"}],
        },
        {
            "ifindex": 2,
            "ifname": "eth0",
            "flags": ["BROADCAST", "UP"],
            "link_type": "ether",
            "address": "52:54:00:aa:bb:cc",
            "addr_info": [
                {"family": "inet", "local": "10.0.0.4", "prefixlen": 24, "scope": "global"},
                {"family": "inet6", "local": "fe80::5054:ff:feaa:bbcc", "prefixlen": 64, "scope": "link"},
                {"family": "inet6", "local": "2001:db8::4", "prefixlen": 64, "scope": "global"},
                {"family": "inet", "local": "not an address", "prefixlen": 24},
                "garbage",
            ],
        },
        {
            "ifindex": 3,
            "ifname": "eth1",
            "flags": ["BROADCAST"],
            "link_type": "ether",
            "address": "52:54:00:dd:ee:ff",
            "addr_info": [],
        },
        {"ifname": 5},
    ]
)


def write(root: Path, relative: str, content: str | bytes) -> None:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)


@pytest.fixture
def machine(tmp_path: Path) -> Path:
    """A fixture tree of a whole machine: /etc, /proc, /sys."""
    root = tmp_path / "root"
    write(root, "etc/os-release", OS_RELEASE)
    write(root, "proc/cpuinfo", CPUINFO)
    write(root, "proc/meminfo", MEMINFO)
    write(root, "proc/sys/kernel/hostname", "web-01\n")
    write(root, "proc/sys/kernel/ostype", "Linux\n")
    write(root, "proc/sys/kernel/osrelease", "6.1.0-28-amd64\n")
    dmi = {
        "sys_vendor": "Dell Inc.",
        "product_name": "PowerEdge R640",
        "product_uuid": BIOS_UUID,
        "product_serial": "7XYZ123",
        "chassis_asset_tag": "ASSET-42",
    }
    for name, value in dmi.items():
        write(root, f"sys/class/dmi/id/{name}", value + "\n")
    write(root, f"sys/firmware/efi/efivars/{SECURE_BOOT_VARIABLE}", b"\x06\x00\x00\x00\x01")
    (root / "sys/class/tpm/tpm0").mkdir(parents=True)
    for name, index, kind, mac in (
        ("lo", 1, 772, "00:00:00:00:00:00"),
        ("eth0", 2, 1, "52:54:00:aa:bb:cc"),
        ("eth1", 3, 1, "52:54:00:dd:ee:ff"),
    ):
        write(root, f"sys/class/net/{name}/ifindex", f"{index}\n")
        write(root, f"sys/class/net/{name}/type", f"{kind}\n")
        write(root, f"sys/class/net/{name}/address", f"{mac}\n")
    return root


def collect(root: Path, ip_json: str | None = IP_JSON, **kwargs: Any) -> SystemInfo:
    return collect_system_info(
        root, ip_json=lambda: ip_json, fqdn_lookup=lambda name: f"{name}.example.net", **kwargs
    )


def test_whole_machine(machine: Path) -> None:
    info = collect(machine)
    assert (info.os_name, info.os_id, info.os_version) == ("Debian GNU/Linux", "debian", "12")
    assert info.os_pretty_name == "Debian GNU/Linux 12 (bookworm)"
    assert (info.kernel_name, info.kernel_release) == ("Linux", "6.1.0-28-amd64")
    assert (info.hostname, info.fqdn, info.domain_name) == ("web-01", "web-01.example.net", "example.net")
    assert (info.manufacturer, info.model) == ("Dell Inc.", "PowerEdge R640")
    assert info.bios_uuid == BIOS_UUID.lower()
    assert (info.serial_number, info.asset_tag) == ("7XYZ123", "ASSET-42")
    assert (info.firmware_type, info.secure_boot, info.tpm_present) == ("UEFI", True, True)
    assert (info.cpu_sockets, info.cpu_cores, info.logical_processors) == (2, 4, 8)
    assert info.processors[0].name == "Intel(R) Xeon(R) Gold 6230 CPU @ 2.10GHz"
    assert info.memory_bytes == 16314564 * 1024


def test_interfaces_from_ip_json_skip_loopback_link_local_and_unaddressed(machine: Path) -> None:
    (interface,) = collect(machine).interfaces
    assert (interface.name, interface.index, interface.mac_address) == ("eth0", 2, "52:54:00:aa:bb:cc")
    assert interface.addresses == (IpAddress("10.0.0.4", 24, 4), IpAddress("2001:db8::4", 64, 6))
    assert interface.addresses[0].network == "10.0.0.0"
    assert interface.addresses[1].cidr == "2001:db8::/64"


def test_interfaces_from_proc_when_ip_is_missing(machine: Path) -> None:
    # 10.0.0.4/24 and 192.168.7.9/16 are local addresses; /proc/net/route has their networks.
    write(
        machine,
        "proc/net/fib_trie",
        "Main:\n  +-- 0.0.0.0/0 3 0 5\n     |-- 0.0.0.0\n        /0 universe UNICAST\n"
        "     +-- 10.0.0.0/24 2 0 2\n        |-- 10.0.0.0\n           /24 link UNICAST\n"
        "        |-- 10.0.0.4\n           /32 host LOCAL\n"
        "     |-- 127.0.0.1\n        /32 host LOCAL\n"
        "     |-- 192.168.7.9\n        /32 host LOCAL\n"
        "Local:\n     |-- 10.0.0.4\n        /32 host LOCAL\n",
    )
    little = {"10.0.0.0": "0000000A", "255.255.255.0": "00FFFFFF", "192.168.0.0": "0000A8C0"}
    write(
        machine,
        "proc/net/route",
        "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n"
        "eth0\t00000000\t0100000A\t0003\t0\t0\t0\t00000000\t0\t0\t0\n"
        f"eth0\t{little['10.0.0.0']}\t00000000\t0001\t0\t0\t0\t{little['255.255.255.0']}\t0\t0\t0\n"
        f"eth1\t{little['192.168.0.0']}\t00000000\t0001\t0\t0\t0\t0000FFFF\t0\t0\t0\n",
    )
    write(
        machine,
        "proc/net/if_inet6",
        "20010db8000000000000000000000004 02 40 00 80     eth0\n"
        "fe800000000000005054fffeaabbcc00 02 40 20 80     eth0\n"
        "00000000000000000000000000000001 01 80 10 80       lo\n",
    )
    if __import__("sys").byteorder != "little":
        pytest.skip("the /proc/net/route fixture is written for a little-endian host")
    interfaces = collect(machine, ip_json=None).interfaces
    assert [(i.name, i.index, i.mac_address, i.addresses) for i in interfaces] == [
        ("eth0", 2, "52:54:00:aa:bb:cc", (IpAddress("10.0.0.4", 24, 4), IpAddress("2001:db8::4", 64, 6))),
        ("eth1", 3, "52:54:00:dd:ee:ff", (IpAddress("192.168.7.9", 16, 4),)),
    ]


def test_missing_files_leave_fields_empty(tmp_path: Path) -> None:
    info = collect_system_info(tmp_path, ip_json=lambda: None, fqdn_lookup=lambda name: name)
    assert info.os_name == info.manufacturer == info.bios_uuid == info.serial_number == ""
    assert (info.firmware_type, info.secure_boot, info.tpm_present) == ("BIOS", None, False)
    assert info.processors == () and info.logical_processors == 0 and info.memory_bytes == 0
    assert info.interfaces == ()
    assert info.hostname  # from uname
    arm = info.to_arm()
    assert "vmUuid" not in arm and "hardwareProfile" not in arm and "osSku" not in arm
    assert arm["networkProfile"] == {"networkInterfaces": []}


def test_unreadable_dmi_file_is_empty(machine: Path) -> None:
    serial = machine / "sys/class/dmi/id/product_serial"
    serial.unlink()
    serial.mkdir()  # reading a directory fails, as an unreadable file does for a non-root reader
    write(machine, "sys/class/dmi/id/product_name", b"\xff\xfe not utf-8")
    info = collect(machine)
    assert info.serial_number == "" and info.model == ""
    assert info.manufacturer == "Dell Inc."


def test_usr_lib_os_release_is_the_fallback(machine: Path) -> None:
    (machine / "etc/os-release").unlink()
    write(machine, "usr/lib/os-release", 'NAME="Fedora Linux"\nVERSION_ID=40\n')
    info = collect(machine)
    assert (info.os_name, info.os_version) == ("Fedora Linux", "40")


def test_secure_boot_off_and_no_efivars(machine: Path) -> None:
    write(machine, f"sys/firmware/efi/efivars/{SECURE_BOOT_VARIABLE}", b"\x06\x00\x00\x00\x00")
    assert collect(machine).secure_boot is False
    (machine / f"sys/firmware/efi/efivars/{SECURE_BOOT_VARIABLE}").unlink()
    assert collect(machine).secure_boot is None


def test_os_release_parsing() -> None:
    values = parse_os_release(OS_RELEASE + 'BAD="unterminated\nSPACED = "a b"\n')
    assert values["PRETTY_NAME"] == "Debian GNU/Linux 12 (bookworm)"
    assert values["ID"] == "debian"
    assert values["HOME_URL"] == "https://www.debian.org/"
    assert values["SPACED"] == "a b"
    assert "BAD" not in values and "broken line" not in values


def test_cpuinfo_without_topology() -> None:
    processors, logical = parse_cpuinfo(CPUINFO_ARM)
    assert logical == 2
    assert [(p.name, p.cores) for p in processors] == [("", 2)]


def test_cpuinfo_empty() -> None:
    assert parse_cpuinfo("") == ((), 0)


@pytest.mark.parametrize(
    ("text", "expected"),
    [(MEMINFO, 16314564 * 1024), ("MemFree: 1 kB\n", 0), ("MemTotal: lots\n", 0), ("", 0)],
)
def test_meminfo(text: str, expected: int) -> None:
    assert parse_meminfo(text) == expected


def test_fqdn_lookup_is_bounded_in_time() -> None:
    def hang(name: str) -> str:
        time.sleep(5)
        return "late.example.net"

    started = time.monotonic()
    assert resolve_fqdn("web-01", hang, 0.2) == "web-01"
    assert time.monotonic() - started < 2


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ("web-01.corp.example.", "web-01.corp.example"),
        ("", "web-01"),
        ("localhost", "web-01"),
        ("localhost.localdomain", "web-01"),
    ],
)
def test_fqdn_answers(answer: str, expected: str) -> None:
    assert resolve_fqdn("web-01", lambda name: answer, 1) == expected


def test_fqdn_lookup_error_gives_the_host_name() -> None:
    def fail(name: str) -> str:
        raise OSError("resolver down")

    assert resolve_fqdn("web-01", fail, 1) == "web-01"


@pytest.mark.parametrize(
    ("fqdn", "domain"),
    [("web-01.example.net", "example.net"), ("web-01", ""), ("10.0.0.4", ""), ("fd00::4", "")],
)
def test_domain_of(fqdn: str, domain: str) -> None:
    assert domain_of(fqdn) == domain


def test_to_arm_shape(machine: Path) -> None:
    arm = collect(machine).to_arm(CloudInfo("AWS", {"awsRegion": "eu-west-1", "awsAccountId": ""}))
    assert arm["osName"] == "linux" and arm["osType"] == "linux"
    assert arm["osVersion"] == "6.1.0-28-amd64"
    assert arm["osSku"] == "Debian GNU/Linux 12 (bookworm)"
    assert arm["machineFqdn"] == arm["dnsFqdn"] == "web-01.example.net"
    assert arm["displayName"] == "web-01" and arm["domainName"] == "example.net"
    assert arm["vmUuid"] == str(uuid.UUID(BIOS_UUID))
    assert arm["hardwareProfile"] == {
        "totalPhysicalMemoryInBytes": 16314564 * 1024,
        "numberOfCpuSockets": 2,
        "processors": [{"name": "Intel(R) Xeon(R) Gold 6230 CPU @ 2.10GHz", "numberOfCores": 2}] * 2,
    }
    assert arm["networkProfile"] == {
        "networkInterfaces": [
            {
                "name": "eth0",
                "id": "2",
                "macAddress": "52:54:00:aa:bb:cc",
                "ipAddresses": [
                    {
                        "address": "10.0.0.4",
                        "ipAddressVersion": "IPv4",
                        "subnet": {"addressPrefix": "10.0.0.0/24"},
                    },
                    {
                        "address": "2001:db8::4",
                        "ipAddressVersion": "IPv6",
                        "subnet": {"addressPrefix": "2001:db8::/64"},
                    },
                ],
            }
        ]
    }
    assert arm["firmwareProfile"] == {"serialNumber": "7XYZ123", "type": "UEFI"}
    assert arm["cloudMetadata"] == {"provider": "AWS"}
    detected = arm["detectedProperties"]
    assert detected["cloudprovider"] == "AWS" and detected["awsRegion"] == "eu-west-1"
    assert "awsAccountId" not in detected  # empty values are left out
    assert detected["manufacturer"] == "Dell Inc." and detected["model"] == "PowerEdge R640"
    assert (detected["processorCount"], detected["coreCount"], detected["logicalCoreCount"]) == (
        "2",
        "4",
        "8",
    )
    assert detected["smbiosAssetTag"] == "ASSET-42"
    assert all(isinstance(value, str) for value in detected.values())


def test_to_arm_without_cloud_has_no_cloud_keys(machine: Path) -> None:
    arm = collect(machine).to_arm()
    assert "cloudMetadata" not in arm and "cloudprovider" not in arm["detectedProperties"]


def test_to_arm_respects_the_control_plane_limits(machine: Path) -> None:
    write(machine, "sys/class/dmi/id/product_serial", "S" * 2000)
    write(machine, "sys/class/dmi/id/product_uuid", "not-a-guid")
    arm = collect(machine).to_arm()
    assert len(arm["firmwareProfile"]["serialNumber"]) == 256
    assert len(arm["detectedProperties"]["serialNumber"]) == 1024
    assert "vmUuid" not in arm


def test_to_arm_is_accepted_by_the_control_plane_model(machine: Path) -> None:
    models = pytest.importorskip("arc_controlplane.api.agent.schema")
    arm = collect(machine).to_arm(CloudInfo("GCP", {"gcpZone": "europe-west1-b"}))
    report = models.MachineReport.model_validate(arm)
    assert report.arm_properties() == arm


def test_this_machine_gives_something_sane() -> None:
    info = collect_system_info(fqdn_timeout=1)
    assert info.hostname and info.kernel_release and info.kernel_name == "Linux"
    assert info.logical_processors >= 1 and info.memory_bytes > 0
    for interface in info.interfaces:
        assert interface.name != "lo" and interface.addresses
    json.dumps(info.to_arm())
