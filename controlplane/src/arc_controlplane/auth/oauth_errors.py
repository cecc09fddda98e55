"""OAuth 2.0 errors in Microsoft Entra ID's form.

Entra answers a failed token request with ``{"error", "error_description", "error_codes",
"timestamp", "trace_id", "correlation_id"}`` where ``error`` is an RFC 6749 code and
``error_description`` starts with ``AADSTS<number>:``. MSAL and azure-identity show that
description to the user, so it names the fix. The AADSTS numbers are Entra's for the same
failure where one is known; clients must key on ``error``, never on the number.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Any, Final

# The error codes of RFC 6749 §5.2 that this service answers with.
INVALID_REQUEST: Final = "invalid_request"
INVALID_CLIENT: Final = "invalid_client"
INVALID_SCOPE: Final = "invalid_scope"
INVALID_RESOURCE: Final = "invalid_resource"
"""Entra's v1 endpoint: the ``resource`` parameter names no resource (not in RFC 6749)."""
UNSUPPORTED_GRANT_TYPE: Final = "unsupported_grant_type"
UNAUTHORIZED_CLIENT: Final = "unauthorized_client"
TEMPORARILY_UNAVAILABLE: Final = "temporarily_unavailable"
"""RFC 6749 §4.1.2.1: the server cannot answer now (throttled failed sign-ins, with 429)."""
INVALID_INSTANCE: Final = "invalid_instance"
"""Entra's instance discovery: the authority's host is not this service."""

# AADSTS numbers (Entra's for the same failure).
MALFORMED_REQUEST: Final = 90013
MISSING_PARAMETER: Final = 900144
POST_ONLY: Final = 900561
TENANT_NOT_FOUND: Final = 90002
TENANT_MALFORMED: Final = 900023
CLIENT_ID_MALFORMED: Final = 700038
CLIENT_NOT_FOUND: Final = 700016
SECRET_INVALID: Final = 7000215
CREDENTIAL_MISSING: Final = 7000218
GRANT_UNSUPPORTED: Final = 70003
SCOPE_INVALID: Final = 70011
SCOPE_NOT_DEFAULT: Final = 1002012
RESOURCE_INVALID: Final = 500011
ASSERTION_MALFORMED: Final = 50027
ASSERTION_TYPE_INVALID: Final = 7000219
ASSERTION_WRONG_CLIENT: Final = 700021
ASSERTION_WRONG_AUDIENCE: Final = 700023
ASSERTION_TIME: Final = 700024
ASSERTION_KEY: Final = 700027
INTERACTIVE_UNSUPPORTED: Final = 70005
INSTANCE_UNKNOWN: Final = 50049
TOO_MANY_FAILURES: Final = 50053
"""Entra: locked out after too many failed sign-ins."""


class OAuthError(Exception):
    """A refused OAuth request: status, RFC 6749 error, AADSTS number and message.

    ``client_id`` is set when the request failed to authenticate a client; the token
    endpoint writes those failures to the audit log.
    """

    def __init__(
        self,
        error: str,
        code: int,
        message: str,
        *,
        status: int = 400,
        client_id: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.error = error
        self.code = code
        self.message = message
        self.status = status
        self.client_id = client_id
        self.headers = headers or {}

    @property
    def description(self) -> str:
        """``AADSTS<code>: <message>``, without the trace lines."""
        return f"AADSTS{self.code}: {self.message}"


def client_authentication_failed(code: int, message: str, client_id: str) -> OAuthError:
    """``invalid_client`` with 401, as Entra answers any failed client authentication."""
    return OAuthError(INVALID_CLIENT, code, message, status=401, client_id=client_id)


@dataclass(frozen=True)
class Trace:
    """The identifiers Entra puts in every error: ours (trace) and the client's (correlation)."""

    trace_id: str
    correlation_id: str
    time: dt.datetime

    @classmethod
    def new(cls, client_request_id: str | None, now: dt.datetime) -> Trace:
        """A new trace id; the correlation id is the client's ``client-request-id`` if it is a GUID."""
        correlation = _guid_or_none(client_request_id) or str(uuid.uuid4())
        return cls(str(uuid.uuid4()), correlation, now)


def _guid_or_none(value: str | None) -> str | None:
    if not value:
        return None
    try:
        return str(uuid.UUID(value))
    except ValueError:
        return None


def error_body(error: OAuthError, trace: Trace) -> dict[str, Any]:
    """The JSON body of an error response, in Entra's shape."""
    timestamp = trace.time.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%SZ")
    return {
        "error": error.error,
        "error_description": (
            f"{error.description}\r\nTrace ID: {trace.trace_id}\r\n"
            f"Correlation ID: {trace.correlation_id}\r\nTimestamp: {timestamp}"
        ),
        "error_codes": [error.code],
        "timestamp": timestamp,
        "trace_id": trace.trace_id,
        "correlation_id": trace.correlation_id,
    }
