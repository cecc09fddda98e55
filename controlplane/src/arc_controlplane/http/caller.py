"""Who is calling a management route, and whether they may do what they ask.

``authenticate`` turns ``Authorization: Bearer <token>`` into a ``Caller`` with the caller's
role assignments; ``Caller.require`` refuses an action at a resource with ARM's 403
``AuthorizationFailed``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy import select

from arc_controlplane.auth.roles import Role, find_role, scope_covers
from arc_controlplane.auth.tokens import InvalidToken
from arc_controlplane.db.tables import Principal, RoleAssignment
from arc_controlplane.errors import ArmError
from arc_controlplane.http.context import Ctx


@dataclass(frozen=True)
class Caller:
    principal_id: str
    app_id: str
    tenant_id: str
    display_name: str
    assignments: tuple[tuple[Role, str], ...]

    def may(self, action: str, resource_id: str) -> bool:
        return any(
            role.allows(action) and scope_covers(scope, resource_id) for role, scope in self.assignments
        )

    def reaches(self, scope: str) -> bool:
        """Whether any of the caller's assignments is at ``scope`` or below it, or covers it
        (what makes a subscription appear in the caller's list, as in Azure)."""
        return any(
            scope_covers(scope, assigned) or scope_covers(assigned, scope) for _, assigned in self.assignments
        )

    def require(self, action: str, resource_id: str) -> None:
        """ARM's 403 unless a role of the caller allows ``action`` at ``resource_id``."""
        if not self.may(action, resource_id):
            raise self._refusal(action, resource_id)

    def require_presence(self, action: str, scope: str) -> None:
        """ARM's 403 naming ``action`` unless the caller :meth:`reaches` ``scope`` (any role there
        lets it see a subscription and read its providers, as in Azure)."""
        if not self.reaches(scope):
            raise self._refusal(action, scope)

    def _refusal(self, action: str, scope: str) -> ArmError:
        return ArmError(
            403,
            "AuthorizationFailed",
            f"The client '{self.app_id}' with object id '{self.principal_id}' does not have "
            f"authorization to perform action '{action}' over scope '{scope}' or the scope "
            "is invalid. If access was recently granted, please refresh your credentials.",
        )


def _unauthenticated(message: str) -> ArmError:
    return ArmError(
        401,
        "InvalidAuthenticationToken",
        message,
        headers={"WWW-Authenticate": 'Bearer authorization_uri="", error="invalid_token"'},
    )


def bearer_token(request: Request) -> str:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise _unauthenticated(
            "The request does not carry an access token: send 'Authorization: Bearer <token>' with a "
            "token from this control plane's token endpoint."
        )
    return token.strip()


def authenticate(request: Request, ctx: Ctx) -> Caller:
    """FastAPI dependency for management routes."""
    token = bearer_token(request)
    try:
        claims = ctx.tokens.verify(token, ctx.tokens.management_audiences())
    except InvalidToken as exc:
        raise _unauthenticated(f"The access token is invalid: {exc}.") from None
    with ctx.db.session() as session:
        principal = session.get(Principal, str(claims["oid"]))
        if principal is None:
            raise _unauthenticated("The access token's principal no longer exists.")
        if principal.tenant_id != str(claims["tid"]):
            raise _unauthenticated("The access token's tenant is not its principal's tenant.")
        rows = session.scalars(
            select(RoleAssignment).where(RoleAssignment.principal_id == principal.id)
        ).all()
        assignments = tuple((find_role(row.role), row.scope) for row in rows)
        caller = Caller(
            principal.id, principal.app_id, principal.tenant_id, principal.display_name, assignments
        )
    request.state.caller = caller
    return caller


AuthenticatedCaller = Annotated[Caller, Depends(authenticate)]
"""Route parameter type: the authenticated caller of a management route."""
