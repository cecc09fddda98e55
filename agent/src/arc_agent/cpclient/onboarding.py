"""What ``connect`` and ``disconnect`` ask of the control plane with an operator's credentials:
an access token for the management audience, a subscription's id from its name (the management
API's subscription list), registration, deletion (docs/agent-protocol.md §5.1, §5.7, §6; the
token service in docs/control-plane.md).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from arc_agent.cpclient.credentials import client_assertion, load_certificate_credential
from arc_agent.cpclient.endpoints import DOCUMENT_PATH
from arc_agent.cpclient.transport import HttpsClient, Reply
from arc_agent.errors import AzcmError, ErrorCode

MANAGEMENT_SCOPE = "https://management.azure.com/.default"
_CLIENT_ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


@dataclass(frozen=True)
class Credentials:
    """Exactly one way to authenticate: a service principal secret or certificate, or a token."""

    tenant_id: str = ""
    client_id: str = ""
    client_secret: str = ""
    certificate_file: Path | None = None
    access_token: str = ""

    def __repr__(self) -> str:  # never print a secret, not even in a traceback
        kind = "access token" if self.access_token else "certificate" if self.certificate_file else "secret"
        return f"Credentials(tenant_id={self.tenant_id!r}, client_id={self.client_id!r}, {kind})"


def with_endpoints(client: HttpsClient) -> HttpsClient:
    """``client`` again, or a new one (``client`` closed) that sends each request to its
    service's name as the control plane's ``/agent/v1/endpoints`` says (docs/endpoints.md); a
    control plane without the document (404) serves everything at its own URL."""
    reply = client.json("GET", DOCUMENT_PATH)
    if reply.status == 404:
        return client
    if reply.status != 200 or not isinstance(reply.document, dict):
        raise AzcmError(
            ErrorCode.CONNECT_FAILED,
            f"the control plane at {client.base_url} did not say where its services are"
            f" (GET {DOCUMENT_PATH} answered {reply.status}: {reply.error_message()[:200]})",
        )
    try:
        named = HttpsClient(client.base_url, client.ca_file, client.timeout, client.proxies, reply.document)
    except AzcmError as exc:  # a name that is not a URL: the control plane's fault, not the user's
        raise AzcmError(
            ErrorCode.CONNECT_FAILED,
            f"the control plane at {client.base_url} said where its services are in a form this agent"
            f" cannot use (GET {DOCUMENT_PATH}): {exc.message}",
        ) from None
    client.close()
    return named


def management_token(client: HttpsClient, credentials: Credentials) -> str:
    """An access token for the management API (the given one, or from the token service)."""
    if credentials.access_token:
        return credentials.access_token
    path = f"/{credentials.tenant_id}/oauth2/v2.0/token"
    fields = {
        "grant_type": "client_credentials",
        "client_id": credentials.client_id,
        "scope": MANAGEMENT_SCOPE,
    }
    if credentials.certificate_file is not None:
        key, certificate = load_certificate_credential(credentials.certificate_file)
        fields["client_assertion_type"] = _CLIENT_ASSERTION_TYPE
        fields["client_assertion"] = client_assertion(
            key, certificate, credentials.client_id, client.base_url + path
        )
    else:
        fields["client_secret"] = credentials.client_secret
    reply = client.form(path, fields)
    token = reply.document.get("access_token") if isinstance(reply.document, dict) else None
    if reply.status == 200 and isinstance(token, str) and token:
        return token
    raise AzcmError(
        ErrorCode.INVALID_CREDENTIALS,
        f"the service principal {credentials.client_id} could not get a token: {reply.error_message()}",
    )


SUBSCRIPTIONS_PATH = "/subscriptions?api-version=2022-12-01"


def subscription_id_by_name(client: HttpsClient, token: str, name: str) -> str:
    """The id of the one subscription the credentials see whose display name is ``name`` (without
    case), as the real agent resolves ``--subscription-id NAME``; AZCM0068 otherwise."""
    reply = client.json("GET", SUBSCRIPTIONS_PATH, None, {"Authorization": f"Bearer {token}"})
    listed = reply.document.get("value") if isinstance(reply.document, dict) else None
    if reply.status != 200 or not isinstance(listed, list):
        raise AzcmError(
            ErrorCode.SUBSCRIPTION_LOOKUP_FAILED,
            f"the subscription {name!r} could not be looked up ({reply.error_message()}); "
            "give its id (a GUID)",
        )
    found = sorted(
        {
            str(entry.get("subscriptionId"))
            for entry in listed
            if isinstance(entry, dict)
            and isinstance(entry.get("subscriptionId"), str)
            and isinstance(entry.get("displayName"), str)
            and entry["displayName"].lower() == name.lower()
        }
    )
    if len(found) == 1:
        return found[0].lower()
    seen = sorted(str(entry.get("displayName")) for entry in listed if isinstance(entry, dict))
    problem = "several subscriptions are" if found else "no subscription the credentials can see is"
    raise AzcmError(
        ErrorCode.SUBSCRIPTION_LOOKUP_FAILED,
        f"{problem} named {name!r} (they see: {', '.join(seen) or 'none'}); "
        "give the subscription's id (a GUID)",
    )


def register(
    client: HttpsClient, token: str, body: Mapping[str, Any], access_token_given: bool
) -> dict[str, Any]:
    """POST /agent/v1/register; the registration answer, or the AZCM error §6 maps it to."""
    reply = client.json("POST", "/agent/v1/register", body, {"Authorization": f"Bearer {token}"})
    if reply.status in (200, 201) and isinstance(reply.document, dict):
        return reply.document
    raise _registration_error(reply, access_token_given)


def _registration_error(reply: Reply, access_token_given: bool) -> AzcmError:
    code, message = reply.error_code(), reply.error_message()
    detail = f"{code}: {message}" if code else f"HTTP {reply.status}: {message}"
    if reply.status == 401:
        if access_token_given:
            return AzcmError(ErrorCode.INVALID_ACCESS_TOKEN, f"the access token was refused ({detail})")
        return AzcmError(ErrorCode.INVALID_CREDENTIALS, f"the credentials were refused ({detail})")
    if code == "InvalidAuthenticationTokenTenant":
        return AzcmError(ErrorCode.INVALID_CREDENTIALS, detail)
    if code in ("InvalidSubscriptionId", "InvalidResourceGroup", "InvalidResourceName", "TenantMismatch"):
        return AzcmError(ErrorCode.INVALID_ARGUMENT, detail)
    if code == "InvalidPublicKey":
        return AzcmError(ErrorCode.RSA_KEY_GENERATION_FAILED, detail)
    if code == "ResourceExists":
        return AzcmError(
            ErrorCode.RESOURCE_EXISTS,
            f"{detail}. Choose another --resource-name, or disconnect the other machine first",
        )
    return AzcmError(
        ErrorCode.RESOURCE_CREATION_FAILED, f"the machine resource could not be created ({detail})"
    )


def delete_machine(client: HttpsClient, token: str, vm_id: str, access_token_given: bool) -> bool:
    """DELETE /agent/v1/machines/{vmId}; False when it was gone already (404)."""
    reply = client.json("DELETE", f"/agent/v1/machines/{vm_id}", None, {"Authorization": f"Bearer {token}"})
    if reply.status in (200, 202, 204):
        return True
    if reply.status == 404:
        return False
    code, message = reply.error_code(), reply.error_message()
    detail = f"{code}: {message}" if code else f"HTTP {reply.status}: {message}"
    if reply.status == 401:
        error = ErrorCode.INVALID_ACCESS_TOKEN if access_token_given else ErrorCode.INVALID_CREDENTIALS
        raise AzcmError(error, f"the credentials were refused ({detail})")
    raise AzcmError(
        ErrorCode.RESOURCE_DELETION_FAILED,
        f"the machine resource could not be deleted ({detail}); the principal needs the Azure "
        "Connected Machine Resource Administrator role, or use --force-local-only to reset this "
        "machine only",
    )


HYBRID_COMPUTE_API = "2026-07-15"
_GATEWAY_ID = re.compile(
    r"^/subscriptions/[0-9a-fA-F-]{36}/resourceGroups/[-\w._()]{1,90}/providers/Microsoft\.HybridCompute"
    r"/gateways/[A-Za-z0-9_.-]{1,64}$",
    re.IGNORECASE,
)


def check_gateway_id(value: str) -> str:
    """``--gateway-id``: the resource id of an Arc gateway; AZCM0023 otherwise."""
    if not _GATEWAY_ID.fullmatch(value):
        raise AzcmError(
            ErrorCode.INVALID_ARGUMENT,
            f"--gateway-id {value[:200]!r} is not the resource id of an Arc gateway"
            " (/subscriptions/ID/resourceGroups/GROUP/providers/Microsoft.HybridCompute/gateways/NAME)",
        )
    return value


def read_gateway(client: HttpsClient, token: str, gateway_id: str) -> dict[str, Any]:
    """The gateway resource (Gateways_Get) as the control plane's agent view carries it:
    ``{id, gatewayId, endpoint, bypass}``; AZCM0023 naming the problem."""
    reply = client.json(
        "GET", f"{gateway_id}?api-version={HYBRID_COMPUTE_API}", None, {"Authorization": f"Bearer {token}"}
    )
    if reply.status != 200 or not isinstance(reply.document, dict):
        code, message = reply.error_code(), reply.error_message()
        raise AzcmError(
            ErrorCode.INVALID_ARGUMENT,
            f"the Arc gateway {gateway_id} cannot be used ({code or f'HTTP {reply.status}'}: {message})",
        )
    properties = reply.document.get("properties")
    if not isinstance(properties, dict):  # gateway_settings then names what is missing
        properties = {}
    return {
        "id": reply.document.get("id"),
        "gatewayId": properties.get("gatewayId"),
        "endpoint": properties.get("gatewayEndpoint"),
        "bypass": properties.get("gatewayBypass") or [],
    }


def link_gateway(client: HttpsClient, token: str, machine_id: str, gateway_id: str) -> None:
    """Point the machine's ``settings/default`` at the gateway (Settings_Update);
    AZCM0062 naming the refusal."""
    reply = client.json(
        "PUT",
        f"{machine_id}/providers/Microsoft.HybridCompute/settings/default?api-version={HYBRID_COMPUTE_API}",
        {"properties": {"gatewayProperties": {"gatewayResourceId": gateway_id}}},
        {"Authorization": f"Bearer {token}"},
    )
    if reply.status != 200:
        code, message = reply.error_code(), reply.error_message()
        raise AzcmError(
            ErrorCode.CONNECT_FAILED,
            f"the machine could not be linked to the Arc gateway {gateway_id}"
            f" ({code or reply.status}: {message})",
        )
