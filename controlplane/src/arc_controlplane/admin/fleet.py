"""The machines as the control plane sees them, for ``arc-controlplane machine list``.

Read-only (no audit entry). The status is derived exactly as the management API derives it
(:func:`machine_status`), with the ``Timing`` the operator states: the CLI cannot know what a
running server was started with. The last heartbeat is ours to show: Azure's machine resource
has no such property, so the management API does not carry it.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import and_, func, select
from sqlalchemy.orm import Session

from arc_controlplane.db.tables import Machine, ResourceGroup, Subscription
from arc_controlplane.machines.status import machine_status
from arc_controlplane.timing import Timing


@dataclass(frozen=True)
class FleetFilter:
    """Which machines to list; None matches every subscription or resource group."""

    subscription_id: str | None = None
    resource_group: str | None = None


@dataclass(frozen=True)
class MachineRow:
    name: str
    resource_group: str
    subscription_id: str
    resource_id: str
    """The ARM id, as the management API gives it."""
    status: str
    status_reason: str | None
    agent_version: str | None
    last_heartbeat: dt.datetime | None
    last_status_change: dt.datetime


@dataclass(frozen=True)
class Fleet:
    machines: list[MachineRow]
    selection: FleetFilter
    missing: str | None = None
    """What the filter names that does not exist here (``subscription <id>``, ``resource group
    'x'``), when the list is empty for that reason; an unknown filter is not an error."""


def list_machines(session: Session, selection: FleetFilter, now: dt.datetime, timing: Timing) -> Fleet:
    """The machines that ``selection`` matches, sorted by subscription, resource group and name."""
    query = (
        select(Machine, ResourceGroup.name)
        .outerjoin(
            ResourceGroup,
            and_(
                ResourceGroup.subscription_id == Machine.subscription_id,
                ResourceGroup.name_lower == Machine.resource_group_lower,
            ),
        )
        .order_by(Machine.subscription_id, Machine.resource_group_lower, Machine.name_lower, Machine.id)
    )
    if selection.subscription_id is not None:
        query = query.where(func.lower(Machine.subscription_id) == selection.subscription_id.lower())
    if selection.resource_group is not None:
        query = query.where(Machine.resource_group_lower == selection.resource_group.lower())
    rows = []
    for machine, group_name in session.execute(query).tuples():
        status = machine_status(machine, now, timing)
        rows.append(
            MachineRow(
                name=machine.name,
                resource_group=group_name or machine.resource_group_lower,
                subscription_id=machine.subscription_id,
                resource_id=machine.resource_id,
                status=status.status,
                status_reason=status.status_reason,
                agent_version=machine.agent_version,
                last_heartbeat=machine.last_heartbeat,
                last_status_change=status.last_status_change,
            )
        )
    missing = None if rows else _missing(session, selection)
    return Fleet(rows, selection, missing)


def _missing(session: Session, selection: FleetFilter) -> str | None:
    """The subscription or resource group of ``selection`` that does not exist, if one does not."""
    if selection.subscription_id is not None:
        subscription = func.lower(Subscription.id) == selection.subscription_id.lower()
        if session.scalars(select(Subscription.id).where(subscription)).first() is None:
            return f"subscription {selection.subscription_id}"
    if selection.resource_group is not None:
        name = selection.resource_group.lower()
        group = select(ResourceGroup.id).where(ResourceGroup.name_lower == name)
        if selection.subscription_id is not None:
            subscription_id = selection.subscription_id.lower()
            group = group.where(func.lower(ResourceGroup.subscription_id) == subscription_id)
        if session.scalars(group).first() is None:
            return f"resource group {selection.resource_group!r}"
    return None
