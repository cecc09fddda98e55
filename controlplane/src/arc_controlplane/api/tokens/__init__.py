"""Entra-style token service, OIDC discovery document and JWKS.

Routes (``{tenant}`` is a tenant id, any case):

- ``POST /{tenant}/oauth2/v2.0/token``: the client credentials grant (``auth/token_service.py``);
- ``POST /{tenant}/oauth2/token``: the same grant at Entra's v1 endpoint (``resource=``), for ADAL and
  ``msrestazure``; ``{tenant}`` may be ``adfs``, the AD FS authority, where the client's tenant is meant;
- ``GET /{tenant}/v2.0/.well-known/openid-configuration`` (and the v1 path without ``/v2.0``);
  ``adfs/.well-known/openid-configuration`` describes the AD FS authority (MSAL reads it);
- ``GET /{tenant}/discovery/v2.0/keys``: the signing keys as a JWKS;
- ``GET /common/discovery/instance``: Entra's instance discovery, for MSAL;
- ``/{tenant}/oauth2/v2.0/authorize`` and ``/{tenant}/oauth2/authorize``: always an error (no
  interactive sign-in here).

Every failure here is an OAuth error in Entra's form (``auth/oauth_errors.py``), never an ARM
error: clients of these routes are OAuth libraries. Failed client authentications are written
to the audit log as ``token/failed``; issued tokens are not (too many).
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

from fastapi import APIRouter, Request
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from arc_controlplane.auth import oauth_errors as oe
from arc_controlplane.auth.discovery import (
    ADFS_TENANT,
    AUTHORIZE_PATH,
    KEYS_PATH,
    OPENID_CONFIGURATION_PATH,
    TOKEN_PATH,
    V1_AUTHORIZE_PATH,
    V1_TOKEN_PATH,
    adfs_configuration,
    instance_discovery,
    openid_configuration,
    tenant_of_authorization_endpoint,
)
from arc_controlplane.auth.oauth_errors import OAuthError, Trace, error_body
from arc_controlplane.auth.oauth_form import (
    MAX_FORM_BYTES,
    BasicCredentials,
    parse_basic_authorization,
    parse_form,
)
from arc_controlplane.auth.token_service import TokenRequest, find_tenant, issue_token
from arc_controlplane.http.audit import audit
from arc_controlplane.http.context import AppContext, Ctx
from arc_controlplane.http.responses import JsonResponse

TOKEN_FAILED_ACTION = "token/failed"  # noqa: S105 - an audit action name
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
COMMON_TENANTS = ("common", "organizations", ADFS_TENANT)
"""Tenant aliases whose key set is served too (as Entra does): keys do not depend on the tenant."""
_TENANT_SEGMENT = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


class TokenAnswer(BaseModel):
    token_type: str
    expires_in: int
    ext_expires_in: int
    access_token: str


class V1TokenAnswer(BaseModel):
    """Entra's v1 answer: its numbers are strings."""

    token_type: str
    expires_in: str
    ext_expires_in: str
    expires_on: str
    not_before: str
    resource: str
    access_token: str


class OAuthErrorAnswer(BaseModel):
    error: str
    error_description: str
    error_codes: list[int]
    timestamp: str
    trace_id: str
    correlation_id: str


class Jwks(BaseModel):
    keys: list[dict[str, Any]]


_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": OAuthErrorAnswer, "description": "OAuth error (Entra's form)"},
}


def _token_form(resource: dict[str, Any]) -> dict[str, Any]:
    """The token request's form in the OpenAPI document; ``resource``: how it names the resource."""
    (name,) = resource
    return {
        "requestBody": {
            "required": True,
            "content": {
                "application/x-www-form-urlencoded": {
                    "schema": {
                        "type": "object",
                        "required": ["grant_type", "client_id", name],
                        "properties": {
                            "grant_type": {"type": "string", "enum": ["client_credentials"]},
                            "client_id": {"type": "string", "format": "uuid"},
                            **resource,
                            "client_secret": {"type": "string"},
                            "client_assertion_type": {
                                "type": "string",
                                "enum": ["urn:ietf:params:oauth:client-assertion-type:jwt-bearer"],
                            },
                            "client_assertion": {"type": "string"},
                        },
                    }
                }
            },
        }
    }


_TOKEN_FORM = _token_form({"scope": {"type": "string", "example": "https://management.azure.com/.default"}})
_V1_TOKEN_FORM = _token_form({"resource": {"type": "string", "example": "https://management.azure.com/"}})


def error_response(error: OAuthError, request: Request, ctx: AppContext) -> JsonResponse:
    trace = Trace.new(request.headers.get("client-request-id"), ctx.clock())
    return JsonResponse(
        error_body(error, trace), status_code=error.status, headers={**NO_STORE, **error.headers}
    )


def _request_base(request: Request) -> str | None:
    """``https://<Host header>``: how the client reached us, if the header makes a valid URL."""
    host = request.headers.get("host", "")
    try:
        parts = urlsplit(f"https://{host}")
        _ = parts.port  # raises ValueError on a bad port
    except ValueError:
        return None
    if not parts.hostname or parts.path or parts.query or parts.username:
        return None
    return f"https://{parts.netloc}"


def _endpoint_bases(request: Request, ctx: AppContext) -> tuple[str, ...]:
    bases = [ctx.tokens.public_url]
    own = _request_base(request)
    if own is not None and own.lower() != ctx.tokens.public_url.lower():
        bases.append(own)
    return tuple(bases)


async def _read_body(request: Request) -> bytes:
    """The body, refused as an OAuth error as soon as it passes the form size limit."""
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            raise OAuthError(
                oe.INVALID_REQUEST,
                oe.MALFORMED_REQUEST,
                f"The request body is larger than {MAX_FORM_BYTES} bytes.",
            )
    return bytes(body)


async def token(tenant: str, request: Request, ctx: Ctx) -> JsonResponse:
    """Issue an access token to a service principal (OAuth 2.0 client credentials grant)."""
    return await _grant(tenant, request, ctx, v1=False)


async def token_v1(tenant: str, request: Request, ctx: Ctx) -> JsonResponse:
    """The same at Entra's v1 endpoint: ``resource=`` names the resource; ``adfs`` as the tenant is the
    AD FS authority (the client's own tenant)."""
    return await _grant(tenant, request, ctx, v1=True)


async def _grant(tenant: str, request: Request, ctx: Ctx, *, v1: bool) -> JsonResponse:
    """Run the grant and answer.

    Failures are counted per client id and address (``auth/throttle.py``); one that has used
    up its allowance is answered 429 with ``Retry-After`` before any secret is checked, and only
    the failure that started the throttling is audited, not each refused attempt.
    """
    address = request.client.host if request.client else "unknown"
    client_hint: str | None = None
    try:
        form = parse_form(request.headers.get("content-type"), await _read_body(request))
        basic = parse_basic_authorization(request.headers.get("authorization"))
        client_hint = _client_hint(form, basic)
    except OAuthError as error:
        return _failed(error, request, ctx, client_hint, address, counted=False)
    wait = ctx.throttle.attempt(client_hint, address)
    if wait is not None:
        return error_response(_throttled(wait), request, ctx)
    try:
        token_request = TokenRequest(
            tenant, form, basic, _endpoint_bases(request, ctx), ctx.throttle.check, v1=v1
        )
        answer = await run_in_threadpool(issue_token, ctx.db, ctx.tokens, token_request, ctx.clock())
    except OAuthError as error:
        return _failed(error, request, ctx, client_hint, address, counted=True)
    except BaseException:
        ctx.throttle.succeeded(client_hint, address)  # the server failed, not the client
        raise
    ctx.throttle.succeeded(client_hint, address)
    return JsonResponse(answer.body(), headers=NO_STORE)


def _failed(
    error: OAuthError,
    request: Request,
    ctx: AppContext,
    client_hint: str | None,
    address: str,
    *,
    counted: bool,
) -> JsonResponse:
    """The answer to a failed token request, audited when it named a client; ``counted``: the
    throttle took an attempt for it."""
    wait = ctx.throttle.retry_after(client_hint, address) if counted else None
    if error.client_id is not None:
        detail = error.description
        if wait is not None:  # this failure used up an allowance: said once, here
            detail += f"; further sign-ins from {address} refused for {wait} s"
        request.state.arc_audit_actor = error.client_id
        audit(request, TOKEN_FAILED_ACTION, error.client_id, detail)
    return error_response(error, request, ctx)


def _client_hint(form: dict[str, str], basic: BasicCredentials | None) -> str | None:
    """The client id the request names (as sent, lower case): what failures are counted by."""
    value = form.get("client_id") or (basic.client_id if basic else "")
    return value.strip().lower()[:64] or None


def _throttled(wait: int) -> OAuthError:
    return OAuthError(
        oe.TEMPORARILY_UNAVAILABLE,
        oe.TOO_MANY_FAILURES,
        f"Too many failed sign-ins from this client and address: try again in {wait} seconds, with the "
        "right credentials (sign-ins that succeed are not counted).",
        status=429,
        headers={"Retry-After": str(wait)},
    )


async def token_wrong_method(tenant: str, request: Request, ctx: Ctx) -> JsonResponse:
    error = OAuthError(
        oe.INVALID_REQUEST,
        oe.POST_ONLY,
        f"The endpoint only accepts POST requests. Received a {request.method} request.",
    )
    return error_response(error, request, ctx)


async def authorize(tenant: str, request: Request, ctx: Ctx) -> JsonResponse:
    """Interactive sign-in does not exist here; the route exists because MSAL requires it."""
    error = OAuthError(
        oe.INVALID_REQUEST,
        oe.INTERACTIVE_UNSUPPORTED,
        "Interactive sign-in is not supported: this control plane issues tokens to service principals "
        f"only, with the client credentials grant at /{{tenant}}{TOKEN_PATH}.",
    )
    return error_response(error, request, ctx)


def _tenant_id(ctx: AppContext, segment: str) -> str:
    with ctx.db.session() as session:
        return find_tenant(session, segment).id


def openid_configuration_document(tenant: str, request: Request, ctx: Ctx) -> JsonResponse:
    """The tenant's OpenID Connect discovery document (the AD FS authority's for ``adfs``)."""
    if tenant.lower() == ADFS_TENANT:
        return JsonResponse(adfs_configuration(ctx.tokens.public_url))
    try:
        tenant_id = _tenant_id(ctx, tenant)
    except OAuthError as error:
        return error_response(error, request, ctx)
    base = ctx.tokens.public_url
    return JsonResponse(openid_configuration(base, tenant_id, ctx.tokens.issuer(tenant_id)))


def keys(tenant: str, request: Request, ctx: Ctx) -> JsonResponse:
    """The keys that sign this control plane's tokens (JWKS, RFC 7517)."""
    if tenant.lower() not in COMMON_TENANTS:
        try:
            _tenant_id(ctx, tenant)
        except OAuthError as error:
            return error_response(error, request, ctx)
    return JsonResponse(ctx.tokens.key.jwks())


def instance(request: Request, ctx: Ctx) -> JsonResponse:
    """Entra's instance discovery: MSAL asks it where an authority's OIDC document is."""
    endpoint = request.query_params.get("authorization_endpoint")
    if not endpoint:
        error = OAuthError(
            oe.INVALID_REQUEST,
            oe.MISSING_PARAMETER,
            "The request must contain the following parameter: 'authorization_endpoint'.",
        )
        return error_response(error, request, ctx)
    segment = None
    for base in _endpoint_bases(request, ctx):
        segment = segment or tenant_of_authorization_endpoint(endpoint, base)
    if segment is None or not _TENANT_SEGMENT.fullmatch(segment):
        error = OAuthError(
            oe.INVALID_INSTANCE,
            oe.INSTANCE_UNKNOWN,
            f"Unknown or invalid instance: the authorization endpoint must be "
            f"{ctx.tokens.public_url}/<tenant>{AUTHORIZE_PATH}.",
        )
        return error_response(error, request, ctx)
    return JsonResponse(instance_discovery(ctx.tokens.public_url, segment))


def create_router() -> APIRouter:
    router = APIRouter(tags=["identity"])
    router.add_api_route(
        "/common/discovery/instance",
        instance,
        methods=["GET"],
        responses=_ERRORS,
        summary="Instance discovery (MSAL)",
    )
    router.add_api_route(
        "/{tenant}" + TOKEN_PATH,
        token,
        methods=["POST"],
        response_model=TokenAnswer,
        responses={**_ERRORS, 401: {"model": OAuthErrorAnswer, "description": "invalid_client"}},
        openapi_extra=_TOKEN_FORM,
        summary="Token (client credentials grant)",
    )
    router.add_api_route(
        "/{tenant}" + V1_TOKEN_PATH,
        token_v1,
        methods=["POST"],
        response_model=V1TokenAnswer,
        responses={**_ERRORS, 401: {"model": OAuthErrorAnswer, "description": "invalid_client"}},
        openapi_extra=_V1_TOKEN_FORM,
        summary="Token, v1 endpoint (client credentials grant; ADAL, AD FS authority)",
    )
    for path in (TOKEN_PATH, V1_TOKEN_PATH):
        router.add_api_route(
            "/{tenant}" + path,
            token_wrong_method,
            methods=["GET", "PUT", "PATCH", "DELETE"],
            include_in_schema=False,
        )
    for path, version in ((AUTHORIZE_PATH, ""), (V1_AUTHORIZE_PATH, "_v1")):
        for method in ("GET", "POST"):
            router.add_api_route(
                "/{tenant}" + path,
                authorize,
                methods=[method],
                operation_id=f"authorize{version}_{method.lower()}",
                responses=_ERRORS,
                summary="Interactive sign-in (not supported)",
            )
    for path in (OPENID_CONFIGURATION_PATH, "/.well-known/openid-configuration"):
        router.add_api_route(
            "/{tenant}" + path,
            openid_configuration_document,
            methods=["GET"],
            responses=_ERRORS,
            summary="OpenID Connect discovery document",
        )
    router.add_api_route(
        "/{tenant}" + KEYS_PATH,
        keys,
        methods=["GET"],
        response_model=Jwks,
        responses=_ERRORS,
        summary="Token signing keys (JWKS)",
    )
    return router
