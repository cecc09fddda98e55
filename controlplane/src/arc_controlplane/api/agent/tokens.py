"""``POST /agent/v1/machines/{vmId}/identity/token``: a token for the machine's managed identity.

himds asks here on behalf of local applications (the Arc challenge flow is himds's business).
The token is a JWT of this control plane's token service, for the requested resource, valid
24 hours, naming the machine's system-assigned identity (``oid``, ``appid``) and its resource
id (``xms_mirid``). Tokens are not audited one by one: himds caches them and asks again only
near their expiry, and the identity can do only what its role assignments allow.
"""

from __future__ import annotations

import datetime as dt
from urllib.parse import urlsplit

from fastapi import APIRouter, Request
from sqlalchemy import bindparam, select

from arc_controlplane.api.agent.schema import IdentityTokenRequest, IdentityTokenResponse
from arc_controlplane.api.agent.services import AgentCtx, AgentServices, VmId, error_responses
from arc_controlplane.db.tables import Principal
from arc_controlplane.errors import ArmError

TOKEN_LIFETIME = dt.timedelta(hours=24)
_DEFAULT_SCOPE_SUFFIX = "/.default"


def token_audience(resource: str) -> str:
    """The audience for ``resource``: an absolute ``https://`` or ``api://`` URI, less ``/.default``."""
    value = resource.strip()
    if value.endswith(_DEFAULT_SCOPE_SUFFIX):
        value = value[: -len(_DEFAULT_SCOPE_SUFFIX)]
    problem = None
    if not value or any(ch.isspace() or not ch.isprintable() for ch in value):
        problem = "it is empty or holds spaces or control characters"
    else:
        try:
            parts = urlsplit(value)
            host = parts.hostname if parts.scheme == "https" else parts.netloc or parts.path
        except ValueError:
            parts, host = None, None
        if parts is None or parts.scheme not in ("https", "api") or not host:
            problem = "it is not an absolute https:// or api:// URI"
        elif parts.query or parts.fragment or "@" in parts.netloc:
            problem = "it has a query, fragment or user name"
    if problem is not None:
        raise ArmError(
            400,
            "InvalidResource",
            f"The resource '{resource[:200]}' cannot be a token audience: {problem}. "
            "Use e.g. https://management.azure.com/ or https://vault.azure.net.",
        )
    return value


def create_router(services: AgentServices) -> APIRouter:
    router = APIRouter()
    app_id_of = select(Principal.app_id).where(Principal.id == bindparam("principal_id"))

    @router.post(
        "/machines/{vmId}/identity/token",
        response_model=IdentityTokenResponse,
        summary="Get a managed identity token",
        responses=error_responses(400, 401, 404, 413),
    )
    def identity_token(
        vm_id: VmId, body: IdentityTokenRequest, request: Request, ctx: AgentCtx
    ) -> IdentityTokenResponse:
        """A 24-hour JWT for ``resource``, for the machine's system-assigned identity."""
        audience = token_audience(body.resource)
        now = ctx.clock()
        with ctx.db.engine.connect() as connection:
            machine = services.authenticate(connection, request, ctx, vm_id, now).machine
            app_id = connection.execute(app_id_of, {"principal_id": machine.principal_id}).scalar()
            if machine.principal_id is None or app_id is None:
                raise ArmError(
                    404,
                    "IdentityNotFound",
                    f"Machine '{machine.vm_id}' has no managed identity; connect it again to get one.",
                )
        issued = ctx.tokens.issue(
            tenant_id=machine.tenant_id,
            object_id=machine.principal_id,
            app_id=app_id,
            audience=audience,
            lifetime=TOKEN_LIFETIME,
            now=now,
            extra={"xms_mirid": machine.resource_id},
        )
        return IdentityTokenResponse(
            access_token=issued.token,
            expires_on=str(issued.claims["exp"]),
            expires_in=str(int(TOKEN_LIFETIME.total_seconds())),
            not_before=str(issued.claims["nbf"]),
            resource=audience,
            token_type="Bearer",  # noqa: S106 - the OAuth token type, not a password
        )

    return router
