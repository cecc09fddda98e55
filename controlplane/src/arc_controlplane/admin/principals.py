"""``sp create|list|delete`` and ``role assign|list``: service principals and their roles.

Built on ``auth/principals.py``; adds what an operator needs on top: scopes checked against
the principal's tenant, messages that name the fix, and an audit entry for every change.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from arc_controlplane.admin.audit_log import record
from arc_controlplane.auth.certificates import ClientCertificate, certificates_pem
from arc_controlplane.auth.principals import (
    MANAGED_IDENTITY,
    SERVICE_PRINCIPAL,
    PrincipalError,
    assign_role,
    assignments_of,
    create_service_principal,
    delete_principal,
    find_principal,
    normalize_scope,
)
from arc_controlplane.auth.roles import Role
from arc_controlplane.db.tables import Principal, ResourceGroup, RoleAssignment, Subscription, Tenant
from arc_controlplane.errors import ControlPlaneError

SCOPE_FORM = "/subscriptions/<id> or /subscriptions/<id>/resourceGroups/<name>"


@dataclass(frozen=True)
class Scope:
    """A checked scope: canonical form, its subscription, and its resource group if any."""

    value: str
    subscription_id: str
    resource_group: str | None
    group_exists: bool


@dataclass(frozen=True)
class Assignment:
    id: str
    role: str
    scope: str
    object_id: str
    client_id: str
    principal_name: str
    principal_kind: str
    created_at: dt.datetime


@dataclass(frozen=True)
class PrincipalInfo:
    client_id: str
    object_id: str
    display_name: str
    kind: str
    tenant_id: str
    credential: str | None
    """``secret``, ``certificate`` or None (managed identities prove themselves otherwise)."""
    created_at: dt.datetime
    roles: tuple[Assignment, ...]


@dataclass(frozen=True)
class CreatedPrincipal:
    info: PrincipalInfo
    client_secret: str | None
    scope: Scope
    thumbprints: tuple[str, ...]


def check_scope(session: Session, scope: str, tenant_id: str) -> Scope:
    """``scope`` in canonical form, if its subscription exists and belongs to ``tenant_id``."""
    try:
        canonical = normalize_scope(session, scope)
    except PrincipalError as exc:
        known = session.scalars(select(Subscription.id).where(Subscription.tenant_id == tenant_id)).all()
        hint = f"; the subscriptions of tenant {tenant_id} are: {', '.join(known)}" if known else ""
        raise ControlPlaneError(f"{exc}{hint}") from None
    parts = canonical.split("/")
    subscription = session.get(Subscription, parts[2])
    assert subscription is not None  # normalize_scope checked it
    if subscription.tenant_id != tenant_id:
        raise ControlPlaneError(
            f"subscription {subscription.id} belongs to tenant {subscription.tenant_id}, not to the "
            f"principal's tenant {tenant_id}"
        )
    group = parts[4] if len(parts) > 4 else None
    exists = group is None or (
        session.scalars(
            select(ResourceGroup.id).where(
                ResourceGroup.subscription_id == subscription.id, ResourceGroup.name_lower == group.lower()
            )
        ).first()
        is not None
    )
    return Scope(canonical, subscription.id, group, exists)


def _assignment(row: RoleAssignment, principal: Principal) -> Assignment:
    return Assignment(
        row.id,
        row.role,
        row.scope,
        principal.id,
        principal.app_id,
        principal.display_name,
        principal.kind,
        row.created_at,
    )


def _info(session: Session, principal: Principal) -> PrincipalInfo:
    credential = "secret" if principal.secret_hash else "certificate" if principal.certificate_pem else None
    roles = tuple(_assignment(row, principal) for row in assignments_of(session, principal))
    return PrincipalInfo(
        principal.app_id,
        principal.id,
        principal.display_name,
        principal.kind,
        principal.tenant_id,
        credential,
        principal.created_at,
        roles,
    )


def create_principal(
    session: Session,
    *,
    tenant_id: str,
    name: str,
    role: Role,
    scope: str,
    certificates: list[ClientCertificate] | None,
    actor: str,
    now: dt.datetime,
) -> CreatedPrincipal:
    """A service principal with ``role`` at ``scope``: a new client secret, or the certificates."""
    if session.get(Tenant, tenant_id) is None:
        raise ControlPlaneError(
            f"tenant {tenant_id} does not exist here; see init.json or 'arc-controlplane sp list'"
        )
    checked = check_scope(session, scope, tenant_id)
    pem = certificates_pem(certificates) if certificates else None
    created = create_service_principal(
        session, tenant_id=tenant_id, display_name=name, now=now, certificate_pem=pem
    )
    principal = created.principal
    credential = "certificate" if pem else "secret"
    record(
        session,
        actor,
        "servicePrincipal/create",
        principal.app_id,
        now,
        f"name={name}; credential={credential}",
    )
    _assign_and_record(session, principal, role, checked, actor, now)
    thumbprints = tuple(certificate.thumbprint for certificate in certificates or ())
    return CreatedPrincipal(_info(session, principal), created.client_secret, checked, thumbprints)


def list_principals(session: Session, *, include_identities: bool) -> list[PrincipalInfo]:
    """Service principals (and machines' managed identities if asked), oldest first."""
    query = select(Principal).order_by(Principal.created_at, Principal.display_name)
    if not include_identities:
        query = query.where(Principal.kind == SERVICE_PRINCIPAL)
    return [_info(session, principal) for principal in session.scalars(query)]


def _find(session: Session, client_or_object_id: str) -> Principal:
    principal = find_principal(session, client_or_object_id.strip().lower())
    if principal is None:
        raise ControlPlaneError(
            f"no principal has the client id or object id {client_or_object_id!r}; "
            "see 'arc-controlplane sp list'"
        )
    return principal


def delete_service_principal(session: Session, client_id: str, actor: str, now: dt.datetime) -> PrincipalInfo:
    """Delete a service principal and its role assignments; return what it was."""
    principal = _find(session, client_id)
    if principal.kind == MANAGED_IDENTITY:
        raise ControlPlaneError(
            f"{client_id} is the managed identity {principal.display_name!r} of a machine; it goes away "
            "when the machine is deleted"
        )
    info = _info(session, principal)
    delete_principal(session, principal)
    record(
        session,
        actor,
        "servicePrincipal/delete",
        info.client_id,
        now,
        f"name={info.display_name}; role assignments removed={len(info.roles)}",
    )
    return info


def assign(
    session: Session, principal_id: str, role: Role, scope: str, actor: str, now: dt.datetime
) -> tuple[Assignment, bool]:
    """Give a principal ``role`` at ``scope``; True if it is new (assigning twice changes nothing)."""
    principal = _find(session, principal_id)
    checked = check_scope(session, scope, principal.tenant_id)
    row, created = _assign_and_record(session, principal, role, checked, actor, now)
    return _assignment(row, principal), created


def _assign_and_record(
    session: Session, principal: Principal, role: Role, scope: Scope, actor: str, now: dt.datetime
) -> tuple[RoleAssignment, bool]:
    """Assign ``role`` at ``scope`` and audit it; True if the assignment is new (no entry otherwise)."""
    before = {(row.role, row.scope_lower) for row in assignments_of(session, principal)}
    row = assign_role(session, principal, role.name, scope.value, now)
    created = (row.role, row.scope_lower) not in before
    if created:
        record(
            session,
            actor,
            "roleAssignment/create",
            scope.value,
            now,
            f"role={role.name}; principal={principal.app_id}",
        )
    return row, created


def list_assignments(session: Session, principal_id: str | None = None) -> list[Assignment]:
    """Role assignments (of one principal, if given), by scope then role."""
    query = (
        select(RoleAssignment, Principal)
        .join(Principal, Principal.id == RoleAssignment.principal_id)
        .order_by(RoleAssignment.scope_lower, RoleAssignment.role, Principal.display_name)
    )
    if principal_id is not None:
        query = query.where(Principal.id == _find(session, principal_id).id)
    return [_assignment(row, principal) for row, principal in session.execute(query).tuples()]
