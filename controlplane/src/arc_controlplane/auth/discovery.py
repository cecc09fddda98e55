"""The token service's URLs and its discovery documents, in Microsoft Entra ID's layout.

``<base>/<tenant>/oauth2/v2.0/token`` issues tokens (``<base>/<tenant>/oauth2/token`` too, the v1
endpoint ADAL-based clients use, and ``<base>/adfs/oauth2/token``, the AD FS form of it),
``<base>/<tenant>/v2.0/.well-known/openid-configuration`` describes the tenant (MSAL reads
``authorization_endpoint``, ``token_endpoint`` and ``issuer`` from it),
``<base>/<tenant>/discovery/v2.0/keys`` publishes the signing keys, and
``<base>/common/discovery/instance`` answers MSAL's instance discovery. ``base`` is the control
plane's public URL (``serve --public-url``).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from arc_controlplane.auth.assertions import SIGNING_ALGORITHMS

TOKEN_PATH = "/oauth2/v2.0/token"  # noqa: S105 - a path, not a password
V1_TOKEN_PATH = "/oauth2/token"  # noqa: S105 - a path, not a password
ADFS_TENANT = "adfs"
"""The tenant segment of an AD FS authority (``<base>/adfs``): no tenant in the URL, the client's
own is meant. Clients that validate every other authority against Microsoft's cloud (ADAL,
``msrestazure``) accept this one as it is (docs/reference/arm.md, "Signing in without Microsoft's cloud")."""
AUTHORIZE_PATH = "/oauth2/v2.0/authorize"
V1_AUTHORIZE_PATH = "/oauth2/authorize"
KEYS_PATH = "/discovery/v2.0/keys"
OPENID_CONFIGURATION_PATH = "/v2.0/.well-known/openid-configuration"
INSTANCE_DISCOVERY_API_VERSION = "1.1"


def token_endpoint(base: str, tenant: str) -> str:
    return f"{base}/{tenant}{TOKEN_PATH}"


def v1_token_endpoint(base: str, tenant: str) -> str:
    return f"{base}/{tenant}{V1_TOKEN_PATH}"


def openid_configuration(base: str, tenant_id: str, issuer: str) -> dict[str, Any]:
    """The OIDC discovery document of ``tenant_id`` (RFC 8414 and OpenID Connect Discovery 1.0).

    Only the client credentials grant exists here: ``authorization_endpoint`` is present
    because MSAL requires it, and answers every request with an error.
    """
    return {
        "issuer": issuer,
        "token_endpoint": token_endpoint(base, tenant_id),
        "jwks_uri": f"{base}/{tenant_id}{KEYS_PATH}",
        "authorization_endpoint": f"{base}/{tenant_id}{AUTHORIZE_PATH}",
        "grant_types_supported": ["client_credentials"],
        "response_types_supported": [],
        "response_modes_supported": [],
        "scopes_supported": [],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "token_endpoint_auth_methods_supported": [
            "client_secret_post",
            "private_key_jwt",
            "client_secret_basic",
        ],
        "token_endpoint_auth_signing_alg_values_supported": list(SIGNING_ALGORITHMS),
        "claims_supported": ["aud", "iss", "iat", "nbf", "exp", "tid", "oid", "sub", "appid", "azp", "ver"],
        "request_uri_parameter_supported": False,
        "tenant_region_scope": None,
        "cloud_instance_name": urlsplit(base).netloc,
        "cloud_graph_host_name": None,
        "msgraph_host": None,
        "rbac_url": None,
    }


def adfs_configuration(base: str) -> dict[str, Any]:
    """The AD FS authority's discovery document (``<base>/adfs/.well-known/openid-configuration``).

    MSAL reads it for an authority whose tenant is ``adfs`` (azure-identity with
    ``AZURE_AUTHORITY_HOST=<base>`` and tenant ``adfs``) and posts to its ``token_endpoint``,
    where the client's own tenant is meant.
    """
    authority = f"{base}/{ADFS_TENANT}"
    return {
        **openid_configuration(base, ADFS_TENANT, authority),
        "token_endpoint": v1_token_endpoint(base, ADFS_TENANT),
        "authorization_endpoint": f"{authority}{V1_AUTHORIZE_PATH}",
    }


def tenant_of_authorization_endpoint(url: str, base: str) -> str | None:
    """The tenant segment of ``https://<our host>/<tenant>/oauth2[/v2.0]/authorize``, else None.

    MSAL sends the authority's host without its port, so a missing port matches any.
    """
    ours = urlsplit(base)
    try:
        parts = urlsplit(url)
        same_host = parts.hostname is not None and parts.hostname == ours.hostname
        same_port = parts.port is None or parts.port == ours.port
    except ValueError:  # a bad port or IPv6 address
        return None
    if parts.scheme.lower() != "https" or not (same_host and same_port):
        return None
    segments = parts.path.strip("/").split("/")
    if len(segments) < 2 or not segments[0] or segments[1].lower() != "oauth2":
        return None
    return segments[0]


def instance_discovery(base: str, tenant: str) -> dict[str, Any]:
    """Entra's instance discovery answer: where the tenant's OIDC document is, and this host's aliases."""
    host = urlsplit(base).netloc
    return {
        "tenant_discovery_endpoint": f"{base}/{tenant}{OPENID_CONFIGURATION_PATH}",
        "api-version": INSTANCE_DISCOVERY_API_VERSION,
        "metadata": [{"preferred_network": host, "preferred_cache": host, "aliases": [host]}],
    }
