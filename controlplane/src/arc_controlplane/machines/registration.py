"""Registering a machine's agent (``azcmagent connect``).

Four outcomes, decided on the machine resource the agent names:

- no such machine: create it (new vmId, a system-assigned identity);
- a machine never connected (pre-created, ``AwaitingConnection``): take it over;
- a connected machine that is ``Disconnected`` (``Expired`` included), or whose registered host
  is this host: re-onboard it with the new key (this is how the original host heals a
  ``Cloned`` machine, and how an ``Expired`` one comes back);
- a connected machine kept alive by another host: refuse (409 ``ResourceExists``).

Every outcome but the last stores the new key, a new 90-day credential, and what the agent
reported, and makes the machine ``Connected``.
"""

from __future__ import annotations

import datetime as dt
import enum
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from arc_controlplane.auth.principals import create_managed_identity
from arc_controlplane.db.tables import Machine, Principal, ResourceGroup
from arc_controlplane.errors import ArmError
from arc_controlplane.machines.credentials import (
    MachineCredential,
    MachinePublicKey,
    issue_credential,
    public_key_pem,
)
from arc_controlplane.machines.lifecycle import MachineChanges, create_machine
from arc_controlplane.machines.status import DISCONNECTED, machine_status
from arc_controlplane.pki import CertificateAuthority
from arc_controlplane.resource_ids import machine_id
from arc_controlplane.timing import Timing

REPORTED_PROPERTIES: frozenset[str] = frozenset(
    {
        "osName",
        "osType",
        "osVersion",
        "osSku",
        "osEdition",
        "machineFqdn",
        "displayName",
        "domainName",
        "adFqdn",
        "dnsFqdn",
        "vmUuid",
        "detectedProperties",
        "hardwareProfile",
        "networkProfile",
        "firmwareProfile",
        "cloudMetadata",
        "agentConfiguration",
        "serviceStatuses",
        "mssqlDiscovered",
    }
)
"""The ARM machine properties the agent reports (at registration, then in heartbeats)."""


class RegistrationKind(enum.Enum):
    CREATED = "created"
    TOOK_OVER = "took over a pre-created machine"
    REONBOARDED = "re-onboarded"


@dataclass(frozen=True)
class Registration:
    """A validated registration request."""

    subscription_id: str
    tenant_id: str
    resource_group: ResourceGroup
    name: str
    location: str
    tags: dict[str, str]
    public_key: MachinePublicKey
    host_id: str
    agent_version: str
    reported: dict[str, Any]
    """Whitelisted properties (``REPORTED_PROPERTIES``) in ARM shape."""
    automatic_upgrade: bool | None = None
    """``agentUpgrade.enableAutomaticUpgrade`` to set (``connect --enable-automatic-upgrade``)."""

    @property
    def resource_id(self) -> str:
        return machine_id(self.subscription_id, self.resource_group.name, self.name)


@dataclass(frozen=True)
class Registered:
    machine: Machine
    kind: RegistrationKind
    credential: MachineCredential


def normalize_location(location: str) -> str:
    """ARM's form of a location: ``West Europe`` and ``westeurope`` are the same."""
    return location.replace(" ", "").lower()


def register_machine(
    session: Session, registration: Registration, ca: CertificateAuthority, now: dt.datetime, timing: Timing
) -> Registered:
    """Create, take over or re-onboard the machine; raises 409 ``ArmError`` when it is in use
    (connected from another host and not ``Disconnected`` by ``timing``)."""
    resource_id = registration.resource_id
    machine = session.scalars(
        select(Machine).where(Machine.resource_id_lower == resource_id.lower()).with_for_update()
    ).first()
    if machine is None:
        machine = create_machine(
            session,
            group=registration.resource_group,
            name=registration.name,
            location=normalize_location(registration.location),
            tenant_id=registration.tenant_id,
            now=now,
            changes=MachineChanges(tags=dict(registration.tags)),
        )
        kind = RegistrationKind.CREATED
    else:
        _check_location(machine, registration)
        kind = _kind_for_existing(machine, registration, now, timing)
        machine.tags = {**machine.tags, **registration.tags}
    _ensure_identity(session, machine, now)
    credential = issue_credential(ca, registration.public_key, machine.vm_id, now)
    _connect(machine, registration, credential, now)
    session.flush()
    return Registered(machine, kind, credential)


def _check_location(machine: Machine, registration: Registration) -> None:
    if normalize_location(machine.location) != normalize_location(registration.location):
        raise ArmError(
            409,
            "InvalidResourceLocation",
            f"The machine '{machine.name}' already exists in location '{machine.location}'; it cannot be "
            f"connected in location '{registration.location}'. Connect with --location "
            f"{machine.location}, or choose another --resource-name.",
        )


def _kind_for_existing(
    machine: Machine, registration: Registration, now: dt.datetime, timing: Timing
) -> RegistrationKind:
    if not machine.connected:
        return RegistrationKind.TOOK_OVER
    if machine.host_id == registration.host_id or machine_status(machine, now, timing).status == DISCONNECTED:
        return RegistrationKind.REONBOARDED
    last = machine.last_heartbeat
    seen = f" (last heartbeat {last:%Y-%m-%dT%H:%M:%SZ})" if last is not None else ""
    raise ArmError(
        409,
        "ResourceExists",
        f"The machine '{machine.name}' in resource group '{registration.resource_group.name}' is connected "
        f"from another host{seen}. If this host is a copy of that one, run 'azcmagent disconnect "
        "--force-local-only' here and connect with another --resource-name. To move the resource to "
        "this host, disconnect it first ('azcmagent disconnect' on the other host, or delete the "
        f"resource), or wait until it shows Disconnected ({timing.describe_disconnected_after()} without "
        "a heartbeat).",
    )


def _ensure_identity(session: Session, machine: Machine, now: dt.datetime) -> None:
    """Give the machine its system-assigned identity, unless it has one already."""
    if machine.principal_id is not None and session.get(Principal, machine.principal_id) is not None:
        return
    principal = create_managed_identity(
        session, tenant_id=machine.tenant_id, display_name=machine.name, now=now
    )
    machine.principal_id = principal.id


def _connect(
    machine: Machine, registration: Registration, credential: MachineCredential, now: dt.datetime
) -> None:
    kept = {key: value for key, value in machine.properties.items() if key not in REPORTED_PROPERTIES}
    machine.properties = {**kept, **registration.reported}
    if registration.automatic_upgrade is not None:
        upgrade = machine.properties.get("agentUpgrade")
        upgrade = dict(upgrade) if isinstance(upgrade, dict) else {}
        machine.properties = {
            **machine.properties,
            "agentUpgrade": {**upgrade, "enableAutomaticUpgrade": registration.automatic_upgrade},
        }
    machine.connected = True
    machine.public_key_pem = public_key_pem(registration.public_key)
    machine.credential_not_after = credential.not_after
    machine.host_id = registration.host_id
    machine.agent_version = registration.agent_version
    machine.last_heartbeat = now
    machine.last_status_change = now
    machine.status_reason = None
    machine.error_details = []
    machine.provisioning_state = "Succeeded"
    machine.updated_at = now
