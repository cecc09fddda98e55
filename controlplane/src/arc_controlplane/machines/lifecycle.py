"""Creating, changing and deleting machine resources: the operations the management API and
the agent API share. Functions take an open session and the time; the caller owns the
transaction, and calls ``Notifier.notify(vm_id)`` after it commits when :func:`apply_changes`
reports new work for the agent.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from arc_controlplane.auth.principals import delete_principal
from arc_controlplane.db.tables import Machine, Principal, ResourceGroup
from arc_controlplane.machines.work import EXTENSIONS, bump
from arc_controlplane.resource_ids import machine_id

MERGED_PROPERTIES = frozenset({"osProfile", "agentUpgrade"})
"""Object properties that a change merges into (JSON merge patch); others are replaced whole."""

AGENT_WORK_PROPERTIES = frozenset({"agentUpgrade"})
"""Properties whose change is new work for the agent (``generation`` bump, long-poll wake-up)."""


@dataclass(frozen=True)
class MachineChanges:
    """A change of the user-settable parts of a machine; None leaves a part as it is."""

    tags: dict[str, str] | None = None
    kind: str | None = None
    set_kind: bool = False
    """Whether ``kind`` is part of the change (so that it can be cleared)."""
    properties: Mapping[str, Any] | None = None
    """ARM property names to values; a None value removes the property."""


def merge_patch(target: Mapping[str, Any], patch: Mapping[str, Any]) -> dict[str, Any]:
    """RFC 7386 JSON merge patch of ``target`` with ``patch`` (None removes a member)."""
    merged = dict(target)
    for key, value in patch.items():
        if value is None:
            merged.pop(key, None)
        elif isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = merge_patch(merged[key], value)
        else:
            merged[key] = merge_patch({}, value) if isinstance(value, Mapping) else value
    return merged


def changed_properties(stored: Mapping[str, Any], changes: Mapping[str, Any]) -> dict[str, Any]:
    """``stored`` with ``changes`` applied: merged for ``MERGED_PROPERTIES``, replaced otherwise."""
    result = dict(stored)
    for name, value in changes.items():
        if value is None:
            result.pop(name, None)
        elif name in MERGED_PROPERTIES and isinstance(value, Mapping):
            merged = merge_patch(result.get(name) or {}, value)
            if merged:
                result[name] = merged
            else:
                result.pop(name, None)
        else:
            result[name] = value
    return result


def create_machine(
    session: Session,
    *,
    group: ResourceGroup,
    name: str,
    location: str,
    tenant_id: str,
    now: dt.datetime,
    vm_id: str | None = None,
    changes: MachineChanges | None = None,
) -> Machine:
    """A new machine resource in ``group``, ``AwaitingConnection`` until an agent registers."""
    changes = changes or MachineChanges()
    resource_id = machine_id(group.subscription_id, group.name, name)
    machine = Machine(
        resource_id=resource_id,
        resource_id_lower=resource_id.lower(),
        subscription_id=group.subscription_id,
        resource_group_lower=group.name_lower,
        name=name,
        name_lower=name.lower(),
        location=location,
        tags=dict(changes.tags or {}),
        kind=changes.kind,
        vm_id=vm_id or str(uuid.uuid4()),
        tenant_id=tenant_id,
        properties=changed_properties({}, changes.properties or {}),
        provisioning_state="Succeeded",
        connected=False,
        error_details=[],
        last_status_change=now,
        generation=0,
        created_at=now,
        updated_at=now,
    )
    session.add(machine)
    session.flush()
    return machine


def apply_changes(machine: Machine, changes: MachineChanges, now: dt.datetime) -> bool:
    """Apply ``changes``; True when they are new work for the agent (``generation`` was bumped)."""
    tags = changes.tags is not None and dict(machine.tags or {}) != changes.tags  # the agent shows them
    if changes.tags is not None:
        machine.tags = dict(changes.tags)
    if changes.set_kind:
        machine.kind = changes.kind
    upgrade = False
    if changes.properties:
        before = machine.properties or {}
        after = changed_properties(before, changes.properties)
        upgrade = any(before.get(name) != after.get(name) for name in AGENT_WORK_PROPERTIES)
        machine.properties = after  # a new object, so that the JSON column is written
    if upgrade:
        bump(machine, EXTENSIONS)  # the extension service upgrades the agent
    elif tags:
        bump(machine)
    machine.updated_at = now
    return tags or upgrade


def delete_machine(session: Session, machine: Machine) -> None:
    """Delete the machine resource and its system-assigned identity (with its role assignments)."""
    if machine.principal_id:
        principal = session.get(Principal, machine.principal_id)
        if principal is not None:
            delete_principal(session, principal)
    session.delete(machine)
    session.flush()
