"""The ARM JSON of a machine (``Microsoft.HybridCompute/machines``), as Machines_Get answers it.

The envelope and the properties that the control plane owns (status, provisioning state, agent
version, vmId, error details, identity) come from the ``Machine`` columns; the status follows
from :func:`machine_status` at the moment of reading, with the server's ``Timing``. What the
agent reports and what users set (``osName``, ``detectedProperties``, ``agentUpgrade``,
``locationData``...) lives in ``Machine.properties`` in ARM shape and is copied from there,
known property names only. The text properties of ``ALWAYS`` are present in every answer,
``null`` when unknown, as in the Machines_Get example
(S:stable/2025-01-13/examples/machine/Machines_Get.json); an object a machine lacks
(``OBJECTS``: ``osProfile``, ``hardwareProfile``...) is left out, never ``null``, since clients
that read a resource back and write it whole (``az resource tag``) expect an object there; the
optional ones appear when they have a value; ``errorDetails`` is a list, empty when there are
none.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from arc_controlplane.clock import iso8601
from arc_controlplane.db.tables import Machine
from arc_controlplane.machines.status import machine_status
from arc_controlplane.resource_ids import MACHINE_TYPE
from arc_controlplane.timing import Timing

ALWAYS = (
    "displayName",
    "machineFqdn",
    "vmUuid",
    "osName",
    "osType",
    "osVersion",
    "osSku",
    "osEdition",
    "domainName",
    "adFqdn",
    "dnsFqdn",
    "locationData",
    "osProfile",
    "cloudMetadata",
    "agentUpgrade",
    "agentConfiguration",
    "serviceStatuses",
    "detectedProperties",
    "hardwareProfile",
    "firmwareProfile",
    "networkProfile",
    "mssqlDiscovered",
    "privateLinkScopeResourceId",
    "parentClusterResourceId",
)
"""Stored properties that every answer carries (``null`` when absent), but those of ``OBJECTS``."""

OBJECTS = frozenset(
    (
        "locationData",
        "osProfile",
        "cloudMetadata",
        "agentUpgrade",
        "agentConfiguration",
        "serviceStatuses",
        "detectedProperties",
        "hardwareProfile",
        "firmwareProfile",
        "networkProfile",
    )
)
"""The properties of ``ALWAYS`` that are objects: left out when absent."""

SETTABLE = (
    "locationData",
    "osProfile",
    "agentUpgrade",
    "parentClusterResourceId",
    "privateLinkScopeResourceId",
    "identityKeyStore",
    "tpmEkCertificate",
    "clientPublicKey",
    "mssqlDiscovered",
    "osType",
    "hardwareResourceId",
)
"""The stored properties an operator sets with PUT or PATCH (what ``api/management/schema.py`` keeps
of a body)."""

OPTIONAL = (
    "storageProfile",
    "licenseProfile",
    "identityKeyStore",
    "tpmEkCertificate",
    "hardwareResourceId",
)
"""Stored properties that answers carry only when they have a value."""


def client_public_key(machine: Machine) -> str | None:
    """The registered key as ARM shows it (base64 of the DER), else the one given at creation."""
    if machine.public_key_pem:
        lines = machine.public_key_pem.strip().splitlines()
        return "".join(line.strip() for line in lines if line.strip() and not line.startswith("-----"))
    value = (machine.properties or {}).get("clientPublicKey")
    return value if isinstance(value, str) else None


def machine_version(machine: Machine) -> list[Any]:
    """What a machine's ETag is made of: what operators set (location, tags, kind and the
    properties a PUT or PATCH stores). What the agent reports, and the status, change on their
    own and are left out, so that an operator's ``If-Match`` is not spoilt by a heartbeat."""
    stored = machine.properties or {}
    return [machine.location, machine.tags or {}, machine.kind, {name: stored.get(name) for name in SETTABLE}]


def machine_view(machine: Machine, now: dt.datetime, timing: Timing) -> dict[str, Any]:
    """The machine resource at ``now``."""
    status = machine_status(machine, now, timing)
    stored = machine.properties or {}
    properties: dict[str, Any] = {
        "provisioningState": machine.provisioning_state,
        "status": status.status,
        "statusReason": status.status_reason,
        "lastStatusChange": iso8601(status.last_status_change),
        "agentVersion": machine.agent_version,
        "errorDetails": list(machine.error_details or []),
        "vmId": machine.vm_id,
        "clientPublicKey": client_public_key(machine),
    }
    for name in ALWAYS:
        value = stored.get(name)
        if value is not None or name not in OBJECTS:
            properties[name] = value
    for name in OPTIONAL:
        if stored.get(name) is not None:
            properties[name] = stored[name]
    view = machine_envelope(machine)
    view["kind"] = machine.kind
    identity = machine_identity(machine)
    if identity is not None:
        view["identity"] = identity
    view["properties"] = properties
    return view


def machine_envelope(machine: Machine) -> dict[str, Any]:
    """What every answer about a machine starts with (the typed resource and the generic one)."""
    return {
        "id": machine.resource_id,
        "name": machine.name,
        "type": MACHINE_TYPE,
        "location": machine.location,
        "tags": machine.tags or {},
    }


def machine_identity(machine: Machine) -> dict[str, Any] | None:
    """The machine's managed identity, once its agent has connected."""
    if not machine.principal_id:
        return None
    return {"type": "SystemAssigned", "principalId": machine.principal_id, "tenantId": machine.tenant_id}
