"""Tenants, subscriptions, service principals and role assignments: the operations the admin
CLI, the token service and the tests share. Functions take an open session and the time; the
caller owns the transaction."""

from __future__ import annotations

import datetime as dt
import re
import uuid
from dataclasses import dataclass

from sqlalchemy import delete, or_, select
from sqlalchemy.orm import Session

from arc_controlplane.auth.roles import find_role
from arc_controlplane.auth.secrets import hash_secret, new_secret
from arc_controlplane.db.tables import Principal, RoleAssignment, Subscription, Tenant

SERVICE_PRINCIPAL = "ServicePrincipal"
MANAGED_IDENTITY = "ManagedIdentity"

_SCOPE = re.compile(
    r"^/subscriptions/(?P<sub>[0-9a-fA-F-]{36})(/resourceGroups/(?P<rg>[-\w._()]{1,90}))?/?$", re.IGNORECASE
)


class PrincipalError(ValueError):
    """A request about principals that cannot be done; the message names the fix."""


@dataclass(frozen=True)
class NewServicePrincipal:
    principal: Principal
    client_secret: str | None
    """Shown once; only its hash is stored."""


def ensure_tenant(session: Session, tenant_id: str, display_name: str, now: dt.datetime) -> Tenant:
    tenant = session.get(Tenant, tenant_id)
    if tenant is None:
        tenant = Tenant(id=tenant_id, display_name=display_name, created_at=now)
        session.add(tenant)
        session.flush()
    return tenant


def ensure_subscription(
    session: Session, subscription_id: str, tenant_id: str, display_name: str, now: dt.datetime
) -> Subscription:
    subscription = session.get(Subscription, subscription_id)
    if subscription is None:
        subscription = Subscription(
            id=subscription_id, tenant_id=tenant_id, display_name=display_name, created_at=now
        )
        session.add(subscription)
        session.flush()
    return subscription


def normalize_scope(session: Session, scope: str) -> str:
    """``/subscriptions/<id>`` or ``/subscriptions/<id>/resourceGroups/<name>`` of a known subscription."""
    match = _SCOPE.match(scope.strip())
    if not match:
        raise PrincipalError(
            f"{scope!r} is not a scope: use /subscriptions/<id> or /subscriptions/<id>/resourceGroups/<name>"
        )
    subscription_id = match["sub"].lower()
    if session.get(Subscription, subscription_id) is None:
        raise PrincipalError(f"subscription {subscription_id} does not exist here")
    if match["rg"]:
        return f"/subscriptions/{subscription_id}/resourceGroups/{match['rg']}"
    return f"/subscriptions/{subscription_id}"


def create_service_principal(
    session: Session,
    *,
    tenant_id: str,
    display_name: str,
    now: dt.datetime,
    certificate_pem: str | None = None,
) -> NewServicePrincipal:
    """A service principal with a client secret, or with a certificate when one is given."""
    if session.get(Tenant, tenant_id) is None:
        raise PrincipalError(f"tenant {tenant_id} does not exist here")
    secret = None if certificate_pem else new_secret()
    principal = Principal(
        id=str(uuid.uuid4()),
        tenant_id=tenant_id,
        app_id=str(uuid.uuid4()),
        kind=SERVICE_PRINCIPAL,
        display_name=display_name,
        secret_hash=hash_secret(secret) if secret else None,
        certificate_pem=certificate_pem,
        created_at=now,
    )
    session.add(principal)
    session.flush()
    return NewServicePrincipal(principal, secret)


def create_managed_identity(
    session: Session, *, tenant_id: str, display_name: str, now: dt.datetime
) -> Principal:
    """The system-assigned identity of a machine (no secret: the machine proves itself by its key)."""
    principal = Principal(
        id=str(uuid.uuid4()),
        tenant_id=tenant_id,
        app_id=str(uuid.uuid4()),
        kind=MANAGED_IDENTITY,
        display_name=display_name,
        created_at=now,
    )
    session.add(principal)
    session.flush()
    return principal


def assign_role(
    session: Session, principal: Principal, role_name: str, scope: str, now: dt.datetime
) -> RoleAssignment:
    try:
        role = find_role(role_name)
    except ValueError as exc:
        raise PrincipalError(str(exc)) from None
    canonical = normalize_scope(session, scope)
    existing = session.scalars(
        select(RoleAssignment).where(
            RoleAssignment.principal_id == principal.id,
            RoleAssignment.role == role.name,
            RoleAssignment.scope_lower == canonical.lower(),
        )
    ).first()
    if existing is not None:
        return existing
    assignment = RoleAssignment(
        id=str(uuid.uuid4()),
        principal_id=principal.id,
        role=role.name,
        scope=canonical,
        scope_lower=canonical.lower(),
        created_at=now,
    )
    session.add(assignment)
    session.flush()
    return assignment


def find_principal(session: Session, client_or_object_id: str) -> Principal | None:
    """A principal by client (app) id or object id."""
    return session.scalars(
        select(Principal).where(
            or_(Principal.app_id == client_or_object_id, Principal.id == client_or_object_id)
        )
    ).first()


def delete_principal(session: Session, principal: Principal) -> None:
    session.execute(delete(RoleAssignment).where(RoleAssignment.principal_id == principal.id))
    session.delete(principal)
    session.flush()


def assignments_of(session: Session, principal: Principal) -> list[RoleAssignment]:
    return list(session.scalars(select(RoleAssignment).where(RoleAssignment.principal_id == principal.id)))
