"""The OAuth 2.0 client credentials grant, as Microsoft Entra ID's token endpoints run it.

A service principal of the tenant authenticates with its client secret (form or HTTP Basic)
or with a client assertion signed by its certificate, names one resource, and gets a one-hour
RS256 access token for that resource. The v2.0 endpoint (MSAL, azure-identity) takes the
resource as ``scope=<resource>/.default``; the v1 endpoint (ADAL, ``msrestazure``) as
``resource=<resource>`` and answers with ``expires_on`` and ``resource`` besides. Under the AD FS
authority (``/adfs/oauth2/token``) the URL names no tenant: the client's own is used; it takes
either form, as AD FS does (ADAL sends ``resource``, MSAL ``scope``).
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from arc_controlplane.auth import oauth_errors as oe
from arc_controlplane.auth.assertions import ASSERTION_TYPE, AssertionCheck, verify_client_assertion
from arc_controlplane.auth.certificates import CertificateError, parse_certificates
from arc_controlplane.auth.discovery import ADFS_TENANT, token_endpoint, v1_token_endpoint
from arc_controlplane.auth.oauth_errors import OAuthError, client_authentication_failed
from arc_controlplane.auth.oauth_form import BasicCredentials
from arc_controlplane.auth.principals import SERVICE_PRINCIPAL
from arc_controlplane.auth.secrets import verify_secret
from arc_controlplane.auth.tokens import TokenIssuer
from arc_controlplane.db.engine import Database
from arc_controlplane.db.tables import Principal, Tenant

GRANT_TYPE = "client_credentials"
ACCESS_TOKEN_LIFETIME = dt.timedelta(hours=1)
DEFAULT_SCOPE_SUFFIX = "/.default"
MAX_SCOPE_LENGTH = 1024
EXPIRES_IN = int(ACCESS_TOKEN_LIFETIME.total_seconds()) - 1
"""``expires_in`` of the answer: 3599 for one hour, as Entra says (``exp`` is whole seconds)."""
# How the client proved itself, in the token's ``azpacr`` claim (Entra: 1 secret, 2 certificate).
AUTHENTICATED_BY_SECRET = "1"  # noqa: S105 - a claim value (azpacr)
AUTHENTICATED_BY_CERTIFICATE = "2"


@dataclass(frozen=True)
class TokenRequest:
    tenant: str
    """The tenant segment of the URL, as the client sent it."""
    form: Mapping[str, str]
    basic: BasicCredentials | None
    endpoint_bases: Sequence[str]
    """Base URLs the client may have used (public URL, the request's own): a client assertion's
    ``aud`` must be the token endpoint under one of them."""
    run_check: Callable[[Callable[[], bool]], bool] = field(default=lambda verify: verify())
    """Runs a client secret's check (the server's: on threads of their own, see throttle.py)."""
    v1: bool = False
    """The v1 endpoint (``/oauth2/token``): ``resource=`` instead of ``scope=``, v1's answer."""

    @property
    def adfs(self) -> bool:
        return self.v1 and self.tenant.lower() == ADFS_TENANT


@dataclass(frozen=True)
class TokenResponse:
    access_token: str
    expires_in: int
    expires_on: int
    not_before: int
    resource: str
    v1: bool = False

    def body(self) -> dict[str, Any]:
        if self.v1:  # Entra's v1 endpoint gives its numbers as strings
            return {
                "token_type": "Bearer",
                "expires_in": str(self.expires_in),
                "ext_expires_in": str(self.expires_in),
                "expires_on": str(self.expires_on),
                "not_before": str(self.not_before),
                "resource": self.resource,
                "access_token": self.access_token,
            }
        return {
            "token_type": "Bearer",
            "expires_in": self.expires_in,
            "ext_expires_in": self.expires_in,
            "access_token": self.access_token,
        }


def _guid(value: str) -> str | None:
    try:
        return str(uuid.UUID(value))
    except ValueError:
        return None


def find_tenant(session: Session, segment: str) -> Tenant:
    """The tenant named by a URL's tenant segment (its GUID, any case); OAuthError otherwise."""
    tenant_id = _guid(segment)
    if tenant_id is None:
        raise OAuthError(
            oe.INVALID_REQUEST,
            oe.TENANT_MALFORMED,
            f"Specified tenant identifier '{segment[:64]}' is neither a valid DirectoryName nor a valid "
            "ObjectId: use the tenant id (a GUID) that 'arc-controlplane init' printed.",
        )
    tenant = session.get(Tenant, tenant_id)
    if tenant is None:
        raise OAuthError(
            oe.INVALID_REQUEST,
            oe.TENANT_NOT_FOUND,
            f"Tenant '{tenant_id}' not found. Check to make sure you have the correct tenant ID and are "
            "signing into the correct control plane.",
        )
    return tenant


def audience_of(scope: str) -> str:
    """The resource a ``<resource>/.default`` scope names, as the token's ``aud``.

    ``https://management.azure.com/.default`` gives ``https://management.azure.com/``; an
    application id (GUID) gives the GUID.
    """
    scopes = scope.split()
    if len(scopes) != 1 or len(scope) > MAX_SCOPE_LENGTH:
        raise OAuthError(
            oe.INVALID_SCOPE,
            oe.SCOPE_INVALID,
            "The provided value for the input parameter 'scope' is not valid: the client credentials "
            "grant takes exactly one scope, '<resource>/.default'.",
        )
    (value,) = scopes
    if not value.lower().endswith(DEFAULT_SCOPE_SUFFIX) or len(value) == len(DEFAULT_SCOPE_SUFFIX):
        raise OAuthError(
            oe.INVALID_SCOPE,
            oe.SCOPE_NOT_DEFAULT,
            f"The provided value for scope {value[:128]} is not valid. Client credential flows must have "
            "a scope value with /.default suffixed to the resource identifier (application ID URI), "
            "e.g. https://management.azure.com/.default.",
        )
    return _audience(value[: -len(DEFAULT_SCOPE_SUFFIX)], "scope", oe.INVALID_SCOPE, oe.SCOPE_INVALID)


def audience_of_resource(resource: str) -> str:
    """The v1 endpoint's ``resource`` (``https://management.azure.com`` or an application id) as
    the token's ``aud``, normalised as :func:`audience_of` does."""
    if len(resource) > MAX_SCOPE_LENGTH or len(resource.split()) != 1:
        raise OAuthError(
            oe.INVALID_RESOURCE,
            oe.RESOURCE_INVALID,
            "The provided value for the input parameter 'resource' is not valid: it names one resource, "
            "e.g. https://management.azure.com/.",
        )
    return _audience(resource, "resource", oe.INVALID_RESOURCE, oe.RESOURCE_INVALID)


def _audience(resource: str, parameter: str, error: str, code: int) -> str:
    """``resource`` as an ``aud``: a GUID as such, a URI with one trailing ``/``; ``parameter``
    named, with ``error`` and ``code``, when it is neither."""
    guid = _guid(resource)
    if guid is not None:
        return guid
    scheme, sep, rest = resource.partition("://")
    if not sep or not scheme.isascii() or not scheme.isalpha() or not rest.strip("/"):
        raise OAuthError(
            error,
            code,
            f"The provided value for the input parameter '{parameter}' is not valid: '{resource[:128]}' "
            "is neither an absolute URI (https://..., api://...) nor an application id.",
        )
    return resource.rstrip("/") + "/"


def _one(form: Mapping[str, str], name: str) -> str | None:
    value = form.get(name, "")
    return value or None


def _required(form: Mapping[str, str], name: str) -> str:
    value = _one(form, name)
    if value is None:
        raise OAuthError(
            oe.INVALID_REQUEST,
            oe.MISSING_PARAMETER,
            f"The request body must contain the following parameter: '{name}'.",
        )
    return value


def _client_id(request: TokenRequest) -> str:
    in_form = _one(request.form, "client_id")
    in_header = request.basic.client_id if request.basic else None
    if in_form and in_header and in_form != in_header:
        raise OAuthError(
            oe.INVALID_REQUEST,
            oe.MALFORMED_REQUEST,
            "The client_id in the form differs from the one in the Authorization header.",
        )
    value = in_form or in_header
    if value is None:
        raise OAuthError(
            oe.INVALID_REQUEST,
            oe.MISSING_PARAMETER,
            "The request body must contain the following parameter: 'client_id'.",
        )
    client_id = _guid(value)
    if client_id is None:
        raise OAuthError(
            oe.INVALID_REQUEST,
            oe.CLIENT_ID_MALFORMED,
            f"Client id '{value[:64]}' is not a valid application identifier: use the service "
            "principal's client id (a GUID).",
        )
    return client_id


def _find_client(session: Session, tenant: Tenant | None, client_id: str) -> Principal:
    """The service principal ``client_id`` of ``tenant`` (of any tenant under the AD FS authority)."""
    principal = session.scalars(select(Principal).where(Principal.app_id == client_id)).first()
    in_tenant = principal is not None and (tenant is None or principal.tenant_id == tenant.id)
    if principal is None or not in_tenant or principal.kind != SERVICE_PRINCIPAL:
        directory = f"the directory '{tenant.id}'" if tenant is not None else "this control plane"
        raise client_authentication_failed(
            oe.CLIENT_NOT_FOUND,
            f"Application with identifier '{client_id}' was not found in {directory}. "
            "Check the client id, or create the service principal with 'arc-controlplane sp create'.",
            client_id,
        )
    return principal


def _check_secret(
    session: Session, principal: Principal, secret: str, run_check: Callable[[Callable[[], bool]], bool]
) -> None:
    if principal.secret_hash is None:
        raise client_authentication_failed(
            oe.SECRET_INVALID,
            f"Invalid client secret provided: application '{principal.app_id}' has no client secret; "
            "authenticate with a client assertion signed by its certificate.",
            principal.app_id,
        )
    if not run_check(lambda: verify_secret(secret, str(principal.secret_hash))):
        raise client_authentication_failed(
            oe.SECRET_INVALID,
            f"Invalid client secret provided. Ensure the secret being sent in the request is the client "
            f"secret value printed when application '{principal.app_id}' was created.",
            principal.app_id,
        )


def _check_assertion(
    principal: Principal, form: Mapping[str, str], audiences: list[str], now: dt.datetime
) -> None:
    assertion_type = _one(form, "client_assertion_type")
    if assertion_type != ASSERTION_TYPE:
        raise OAuthError(
            oe.INVALID_REQUEST,
            oe.ASSERTION_TYPE_INVALID,
            f"'client_assertion_type' must be '{ASSERTION_TYPE}'.",
        )
    try:
        certificates = parse_certificates((principal.certificate_pem or "").encode("ascii", "replace"))
    except CertificateError:
        certificates = []
    if not certificates:
        raise client_authentication_failed(
            oe.ASSERTION_KEY,
            f"Application '{principal.app_id}' has no certificate registered; authenticate with its "
            "client secret.",
            principal.app_id,
        )
    check = AssertionCheck(client_id=principal.app_id, audiences=audiences, now=now)
    verify_client_assertion(_required(form, "client_assertion"), certificates, check)


def _authenticate(
    session: Session, tenant: Tenant | None, client_id: str, request: TokenRequest, now: dt.datetime
) -> tuple[Principal, str]:
    """The client, once its credential checks out, and how it proved itself (``azpacr``).

    ``tenant`` is None under the AD FS authority: the client's own tenant is meant.
    """
    principal = _find_client(session, tenant, client_id)
    secret = _one(request.form, "client_secret") or (request.basic.client_secret if request.basic else None)
    has_assertion = _one(request.form, "client_assertion") is not None
    if secret is not None and has_assertion:
        raise OAuthError(
            oe.INVALID_REQUEST,
            oe.MALFORMED_REQUEST,
            "Send either 'client_secret' or 'client_assertion', not both.",
        )
    if secret is not None:
        _check_secret(session, principal, secret, request.run_check)
        return principal, AUTHENTICATED_BY_SECRET
    if has_assertion:
        endpoint = v1_token_endpoint if request.v1 else token_endpoint  # the one the client posts to
        audiences = [
            endpoint(base, segment)
            for base in request.endpoint_bases
            for segment in dict.fromkeys((principal.tenant_id, request.tenant))
        ]
        _check_assertion(principal, request.form, audiences, now)
        return principal, AUTHENTICATED_BY_CERTIFICATE
    raise client_authentication_failed(
        oe.CREDENTIAL_MISSING,
        "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.",
        client_id,
    )


def issue_token(db: Database, tokens: TokenIssuer, request: TokenRequest, now: dt.datetime) -> TokenResponse:
    """Run the client credentials grant; OAuthError (in Entra's terms) when it cannot."""
    with db.session() as session:
        tenant = None if request.adfs else find_tenant(session, request.tenant)
        grant_type = _required(request.form, "grant_type")
        if grant_type != GRANT_TYPE:
            raise OAuthError(
                oe.UNSUPPORTED_GRANT_TYPE,
                oe.GRANT_UNSUPPORTED,
                f"The app requested an unsupported grant type '{grant_type[:64]}': this control plane "
                f"issues tokens for '{GRANT_TYPE}' only.",
            )
        client_id = _client_id(request)
        if request.adfs and _one(request.form, "resource") is None:  # AD FS takes either (MSAL: scope)
            audience = audience_of(_required(request.form, "scope"))
        elif request.v1:
            audience = audience_of_resource(_required(request.form, "resource"))
        else:
            audience = audience_of(_required(request.form, "scope"))
        principal, authenticated_by = _authenticate(session, tenant, client_id, request, now)
        issued = tokens.issue(
            tenant_id=principal.tenant_id,
            object_id=principal.id,
            app_id=principal.app_id,
            audience=audience,
            lifetime=ACCESS_TOKEN_LIFETIME,
            now=now,
            extra={"azpacr": authenticated_by},
        )
    return TokenResponse(
        issued.token,
        EXPIRES_IN,
        expires_on=int(issued.claims["exp"]),
        not_before=int(issued.claims["nbf"]),
        resource=audience,
        v1=request.v1,
    )
