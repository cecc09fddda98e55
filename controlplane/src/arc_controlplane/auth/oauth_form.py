"""The body of a token request: ``application/x-www-form-urlencoded``, parsed strictly.

Every way a body can be malformed (another media type, bad UTF-8 or percent-encoding, a
parameter given twice, too many parameters) is an OAuth ``invalid_request``, never a crash.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from urllib.parse import parse_qsl, unquote

from arc_controlplane.auth import oauth_errors as oe
from arc_controlplane.auth.oauth_errors import OAuthError

FORM_MEDIA_TYPE = "application/x-www-form-urlencoded"
MAX_FORM_BYTES = 64 * 1024
"""Far above any real token request (a client assertion is ~2 KiB); bigger bodies are refused."""
MAX_FIELDS = 32


def _malformed(message: str) -> OAuthError:
    return OAuthError(oe.INVALID_REQUEST, oe.MALFORMED_REQUEST, message)


def parse_form(content_type: str | None, body: bytes) -> dict[str, str]:
    """The parameters of a form body, each given at most once (RFC 6749 §3.2)."""
    media_type = (content_type or "").split(";", 1)[0].strip().lower()
    if media_type != FORM_MEDIA_TYPE:
        raise _malformed(
            f"The request body must be '{FORM_MEDIA_TYPE}', not '{media_type or 'missing'}'. "
            "Send the parameters as an HTML form."
        )
    if len(body) > MAX_FORM_BYTES:
        raise _malformed(f"The request body is larger than {MAX_FORM_BYTES} bytes.")
    try:
        pairs = parse_qsl(
            body.decode("utf-8"),
            keep_blank_values=True,
            strict_parsing=False,
            errors="strict",
            max_num_fields=MAX_FIELDS,
        )
    except ValueError as exc:  # bad UTF-8, bad percent-encoding, too many fields
        raise _malformed(f"The request body is not a valid form: {exc}.") from None
    form: dict[str, str] = {}
    for name, value in pairs:
        if name in form:
            raise _malformed(f"The parameter '{name}' was given more than once.")
        form[name] = value
    return form


@dataclass(frozen=True)
class BasicCredentials:
    """``Authorization: Basic`` client authentication (``client_secret_basic``, RFC 6749 §2.3.1)."""

    client_id: str
    client_secret: str


def parse_basic_authorization(header: str | None) -> BasicCredentials | None:
    """The client id and secret of an ``Authorization: Basic`` header; None without one."""
    if not header:
        return None
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic":
        raise OAuthError(
            oe.INVALID_REQUEST,
            oe.MALFORMED_REQUEST,
            f"The token endpoint accepts no '{scheme[:20]}' authorization; send the client's credentials in "
            "the form, or as 'Authorization: Basic'.",
        )
    credentials = _decode_basic(encoded.strip())
    if credentials is None:
        raise OAuthError(
            oe.INVALID_CLIENT,
            oe.MALFORMED_REQUEST,
            "The 'Authorization: Basic' header is not base64 of 'client_id:client_secret'.",
            status=401,
            headers={"WWW-Authenticate": 'Basic realm="token"'},
        )
    return credentials


def _decode_basic(encoded: str) -> BasicCredentials | None:
    try:
        decoded = base64.b64decode(encoded, validate=True).decode("utf-8")
        client_id, colon, secret = decoded.partition(":")
        if not colon:
            return None
        # RFC 6749 §2.3.1: both are form-urlencoded before they are joined.
        return BasicCredentials(unquote(client_id, errors="strict"), unquote(secret, errors="strict"))
    except (binascii.Error, ValueError):
        return None
