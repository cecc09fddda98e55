"""Finding subscriptions, resource groups and machines by id, case-insensitively, and ARM's
not-found errors for them."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from arc_controlplane.db.tables import Machine, ResourceGroup, Subscription
from arc_controlplane.errors import ArmError
from arc_controlplane.resource_ids import MACHINE_TYPE


def find_subscription(session: Session, subscription_id: str) -> Subscription | None:
    return session.scalars(
        select(Subscription).where(func.lower(Subscription.id) == subscription_id.lower())
    ).first()


def find_group(session: Session, subscription_id: str, name: str) -> ResourceGroup | None:
    return session.scalars(
        select(ResourceGroup).where(
            ResourceGroup.subscription_id == subscription_id, ResourceGroup.name_lower == name.lower()
        )
    ).first()


def find_machine(
    session: Session, subscription_id: str, group: str, name: str, *, for_update: bool = False
) -> Machine | None:
    """The machine; ``for_update`` locks its row until the transaction ends (PostgreSQL; SQLite
    has no row locks: writers also hold ``ctx.writes``)."""
    query = select(Machine).where(
        Machine.subscription_id == subscription_id,
        Machine.resource_group_lower == group.lower(),
        Machine.name_lower == name.lower(),
    )
    return session.scalars(query.with_for_update() if for_update else query).first()


def group_not_found(name: str) -> ArmError:
    return ArmError(404, "ResourceGroupNotFound", f"Resource group '{name}' could not be found.")


def machine_not_found(group: str, name: str) -> ArmError:
    return ArmError(
        404,
        "ResourceNotFound",
        f"The Resource '{MACHINE_TYPE}/{name}' under resource group '{group}' was not found.",
    )


def require_group(session: Session, subscription_id: str, name: str) -> ResourceGroup:
    group = find_group(session, subscription_id, name)
    if group is None:
        raise group_not_found(name)
    return group


def require_machine(
    session: Session, subscription_id: str, group: str, name: str, *, for_update: bool = False
) -> Machine:
    """The machine; 404 ``ResourceGroupNotFound`` or ``ResourceNotFound`` as ARM answers."""
    machine = find_machine(session, subscription_id, group, name, for_update=for_update)
    if machine is None:
        require_group(session, subscription_id, group)
        raise machine_not_found(group, name)
    return machine
