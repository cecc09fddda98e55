"""The instance metadata himds serves (``/metadata/instance``), rendered once per change.

Azure's shape (docs/reference/himds.md): ``{"compute": {...}, "network": {"interface": [...]}}``. The
values come from the connection state (which resource this machine is) and the system
information (what the machine is). Arc machines have no image, plan, fault domain or scale set:
those keys are present with empty values (``platformFaultDomain``/``platformUpdateDomain`` are
``"0"`` as for a lone Azure VM); ``sku`` is the OS's ``PRETTY_NAME`` and ``version`` its
``VERSION_ID``; ``securityProfile`` reports Secure Boot and whether a TPM exists. These choices
are ours (docs/reference/not-public.md).

The JSON bytes are made when the state or the system information changes (a new object), not
per request: serving a document costs a comparison and a write.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from arc_agent.config.connection import ConnectionState
from arc_agent.metadata.sysinfo import SystemInfo

PROVIDER = "Microsoft.HybridCompute"
AZURE_ENVIRONMENTS = {
    "azurecloud": "AzurePublicCloud",
    "azureusgovernment": "AzureUSGovernmentCloud",
    "azurechinacloud": "AzureChinaCloud",
}


@dataclass(frozen=True)
class InstanceDocuments:
    instance: bytes
    """``{"compute": ..., "network": ...}``."""
    compute: bytes
    network: bytes


def compute_document(state: ConnectionState, system: SystemInfo) -> dict[str, Any]:
    tags = state.tags
    return {
        "azEnvironment": AZURE_ENVIRONMENTS.get(state.cloud.lower(), state.cloud),
        "customData": "",
        "isHostCompatibilityLayerVm": "false",
        "location": state.location,
        "name": state.resource_name,
        "offer": "",
        "osType": "Linux",
        "placementGroupId": "",
        "plan": {"name": "", "product": "", "publisher": ""},
        "platformFaultDomain": "0",
        "platformUpdateDomain": "0",
        "provider": PROVIDER,
        "publicKeys": [],
        "publisher": "",
        "resourceGroupName": state.resource_group,
        "resourceId": state.resource_id,
        "securityProfile": {
            "secureBootEnabled": "true" if system.secure_boot else "false",
            "virtualTpmEnabled": "true" if system.tpm_present else "false",
        },
        "sku": system.os_pretty_name,
        "storageProfile": {
            "dataDisks": [],
            "imageReference": {"id": "", "offer": "", "publisher": "", "sku": "", "version": ""},
            "osDisk": {"name": "", "osType": "Linux"},
        },
        "subscriptionId": state.subscription_id,
        "tags": ";".join(f"{name}:{value}" for name, value in tags.items()),
        "tagsList": [{"name": name, "value": value} for name, value in tags.items()],
        "version": system.os_version,
        "vmId": state.vm_id,
        "vmScaleSetName": "",
        "vmSize": "",
        "zone": "",
    }


def network_document(system: SystemInfo) -> dict[str, Any]:
    interfaces = []
    for interface in system.interfaces:
        families: dict[str, Any] = {}
        for version in (4, 6):
            addresses = [a for a in interface.addresses if a.version == version]
            families[f"ipv{version}"] = {
                "ipAddress": [{"privateIpAddress": a.address, "publicIpAddress": ""} for a in addresses],
                "subnet": _unique([{"address": a.network, "prefix": str(a.prefix)} for a in addresses]),
            }
        interfaces.append({**families, "macAddress": interface.mac_address.replace(":", "").upper()})
    return {"interface": interfaces}


def _unique(subnets: list[dict[str, str]]) -> list[dict[str, str]]:
    seen: list[dict[str, str]] = []
    for subnet in subnets:
        if subnet not in seen:
            seen.append(subnet)
    return seen


def _dump(document: Any) -> bytes:
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def render(state: ConnectionState, system: SystemInfo) -> InstanceDocuments:
    compute = compute_document(state, system)
    network = network_document(system)
    return InstanceDocuments(
        instance=_dump({"compute": compute, "network": network}),
        compute=_dump(compute),
        network=_dump(network),
    )


class InstanceMetadata:
    """The rendered documents for the current state and system information."""

    def __init__(self, system: Callable[[], SystemInfo]) -> None:
        """``system`` gives the current system information (the same object until it changes)."""
        self._system = system
        self._lock = threading.Lock()
        self._rendered: tuple[ConnectionState, SystemInfo, InstanceDocuments] | None = None

    def documents(self, state: ConnectionState) -> InstanceDocuments:
        system = self._system()
        rendered = self._rendered
        if rendered is not None and rendered[0] is state and rendered[1] is system:
            return rendered[2]
        with self._lock:
            documents = render(state, system)
            self._rendered = (state, system, documents)
            return documents
