"""Shared pieces of the himds tests: a connection state, a system description, an in-process
himds on loopback (the real server and API in a thread), and a plain HTTP client."""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from arc_agent.config.connection import ConnectionState
from arc_agent.himds.api import HimdsApi
from arc_agent.himds.server import HimdsServer
from arc_agent.metadata.sysinfo import IpAddress, NetworkInterface, Processor, SystemInfo

VM_ID = "45af4677-2e1d-4922-be74-d8676b4a413e"
RESOURCE_ID = (
    "/subscriptions/7e94351d-5040-4466-a7b7-200bf848462c/resourceGroups/Arc-Servers"
    "/providers/Microsoft.HybridCompute/machines/web-01"
)


def make_state(**changes: Any) -> ConnectionState:
    values: dict[str, Any] = {
        "resource_id": RESOURCE_ID,
        "resource_name": "web-01",
        "resource_group": "Arc-Servers",
        "subscription_id": "7e94351d-5040-4466-a7b7-200bf848462c",
        "tenant_id": "7b3e1099-423c-4bb4-b6ca-f89e7f2ffd63",
        "location": "westeurope",
        "cloud": "AzureCloud",
        "vm_id": VM_ID,
        "vm_uuid": "4c4c4544-0042-3510-8056-b4c04f4e3732",
        "host_id": "4f1c0a4e9b7d2c61a8e3f5b0",
        "principal_id": "2c66296c-8cb3-49a5-a444-3c620b3c5a1b",
        "control_plane_url": "https://cp.example.net:8443",
        "assertion_audience": "https://cp.example.net:8443/agent",
        "credential_not_after": "2027-02-20T06:06:21Z",
        "connected_at": "2026-11-22T08:00:00Z",
        "tags": {"env": "prod", "team": "web"},
    }
    values.update(changes)
    return ConnectionState(**values)


def make_system(**changes: Any) -> SystemInfo:
    values: dict[str, Any] = {
        "os_name": "Debian GNU/Linux",
        "os_id": "debian",
        "os_version": "12",
        "os_pretty_name": "Debian GNU/Linux 12 (bookworm)",
        "kernel_name": "Linux",
        "kernel_release": "6.1.0-28-amd64",
        "architecture": "x86_64",
        "hostname": "web-01",
        "fqdn": "web-01.example.net",
        "domain_name": "example.net",
        "manufacturer": "QEMU",
        "model": "Standard PC (Q35 + ICH9, 2009)",
        "bios_uuid": "4c4c4544-0042-3510-8056-b4c04f4e3732",
        "serial_number": "SN-123",
        "asset_tag": "",
        "firmware_type": "UEFI",
        "secure_boot": True,
        "tpm_present": False,
        "processors": (Processor("AMD EPYC 7763", 4),),
        "logical_processors": 8,
        "memory_bytes": 8 * 2**30,
        "interfaces": (
            NetworkInterface(
                "eth0",
                2,
                "52:54:00:12:34:56",
                (IpAddress("10.0.0.4", 24, 4), IpAddress("10.0.0.5", 24, 4), IpAddress("fd00::4", 64, 6)),
            ),
        ),
    }
    values.update(changes)
    return SystemInfo(**values)


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    """Lower-case names."""
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def get(port: int, target: str, headers: Mapping[str, str] | None = None) -> Reply:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", target, headers=dict({"Metadata": "true"} if headers is None else headers))
        response = conn.getresponse()
        return Reply(response.status, {k.lower(): v for k, v in response.getheaders()}, response.read())
    finally:
        conn.close()


@contextmanager
def serving(api: HimdsApi) -> Iterator[int]:
    """The real himds HTTP server for ``api`` on a free loopback port, in a thread."""
    server = HimdsServer(("127.0.0.1", 0), api)
    thread = threading.Thread(target=server.serve_forever, name="test-himds", daemon=True)
    thread.start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
        api.close()


def wait_for(check: Callable[[], bool], seconds: float, what: str) -> None:
    """Until ``check()`` holds (what a service does in its own thread), or fail naming ``what``."""
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {seconds} s: {what}")
        time.sleep(0.2)
