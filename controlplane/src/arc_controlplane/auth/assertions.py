"""Client assertions (RFC 7523 ``private_key_jwt``), checked as Microsoft Entra ID checks them.

A service principal with a registered certificate proves itself with a JWT signed by that
certificate's private key:

- header: ``alg`` RS256/384/512 or PS256/384/512 (RSA keys), ES256/384/512 (EC keys); the
  certificate named by ``x5t`` (base64url SHA-1 thumbprint) and/or ``x5t#S256`` (SHA-256);
- claims: ``aud`` the token endpoint URL, ``iss`` = ``sub`` = the client id, ``exp``, ``jti``,
  optionally ``nbf`` (MSAL does not send it); five minutes of clock skew are tolerated.

Assertions are not remembered, so one can be replayed until its ``exp``: clients should keep
them short-lived (MSAL makes them valid for 10 minutes).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

from arc_controlplane.auth import oauth_errors as oe
from arc_controlplane.auth.certificates import ClientCertificate
from arc_controlplane.auth.oauth_errors import client_authentication_failed

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
CLOCK_SKEW = dt.timedelta(minutes=5)
RSA_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512")
EC_ALGORITHMS = ("ES256", "ES384", "ES512")
SIGNING_ALGORITHMS = (*RSA_ALGORITHMS, *EC_ALGORITHMS)
_REQUIRED_CLAIMS = ["exp", "aud", "iss", "sub", "jti"]


@dataclass(frozen=True)
class AssertionCheck:
    """What an assertion must match: the client, the audiences it may name, the time."""

    client_id: str
    audiences: Collection[str]
    """Accepted ``aud`` values; compared case-insensitively, ignoring a trailing slash."""
    now: dt.datetime


def _normal(url: str) -> str:
    return url.rstrip("/").lower()


def _decode_thumbprint(header: dict[str, Any], name: str, size: int, client_id: str) -> bytes | None:
    value = header.get(name)
    if value is None:
        return None
    try:
        if not isinstance(value, str):
            raise ValueError
        raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
        if len(raw) != size:
            raise ValueError
    except (ValueError, binascii.Error):
        raise client_authentication_failed(
            oe.ASSERTION_MALFORMED,
            f"The client assertion's header '{name}' is not a base64url thumbprint of {size} bytes.",
            client_id,
        ) from None
    return raw


def _certificate_for(
    header: dict[str, Any], certificates: Sequence[ClientCertificate], client_id: str
) -> ClientCertificate:
    sha1 = _decode_thumbprint(header, "x5t", 20, client_id)
    sha256 = _decode_thumbprint(header, "x5t#S256", 32, client_id)
    if sha1 is None and sha256 is None:
        raise client_authentication_failed(
            oe.ASSERTION_KEY,
            "The client assertion's header names no certificate: set 'x5t' (base64url SHA-1 "
            "thumbprint) or 'x5t#S256' (SHA-256) of the certificate registered for the application.",
            client_id,
        )
    for certificate in certificates:
        if (sha1 is None or certificate.sha1 == sha1) and (sha256 is None or certificate.sha256 == sha256):
            return certificate
    used = (sha1 or sha256 or b"").hex().upper()
    raise client_authentication_failed(
        oe.ASSERTION_KEY,
        "The certificate with identifier used to sign the client assertion is not registered on "
        f"application '{client_id}'. Thumbprint of key used by client: '{used}'.",
        client_id,
    )


def _check_time(claims: dict[str, Any], check: AssertionCheck) -> None:
    now = check.now.timestamp()
    skew = CLOCK_SKEW.total_seconds()
    exp, nbf = claims.get("exp"), claims.get("nbf")
    for name, value in (("exp", exp), ("nbf", nbf)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise client_authentication_failed(
                oe.ASSERTION_MALFORMED,
                f"The client assertion's '{name}' claim must be a number (seconds since the epoch).",
                check.client_id,
            )
    assert isinstance(exp, int | float)  # required and checked above
    if exp + skew < now or (nbf is not None and nbf - skew > now):
        stamp = dt.datetime.fromtimestamp
        raise client_authentication_failed(
            oe.ASSERTION_TIME,
            "Client assertion is not within its valid time range. Current time: "
            f"{check.now.isoformat()}, assertion valid to: {stamp(exp, dt.UTC).isoformat()}"
            + (f", valid from: {stamp(nbf, dt.UTC).isoformat()}" if nbf is not None else "")
            + ". Check the client's clock.",
            check.client_id,
        )


def _check_identity(claims: dict[str, Any], check: AssertionCheck) -> None:
    wanted = check.client_id.lower()
    for name in ("iss", "sub"):
        value = claims.get(name)
        if not isinstance(value, str) or value.lower() != wanted:
            raise client_authentication_failed(
                oe.ASSERTION_WRONG_CLIENT,
                f"Client assertion application identifier doesn't match 'client_id' parameter: its "
                f"'{name}' claim must be '{check.client_id}'.",
                check.client_id,
            )
    audience = claims.get("aud")
    named = [audience] if isinstance(audience, str) else audience if isinstance(audience, list) else []
    accepted = {_normal(url) for url in check.audiences}
    if not any(isinstance(url, str) and _normal(url) in accepted for url in named):
        expected = next(iter(check.audiences), "")
        raise client_authentication_failed(
            oe.ASSERTION_WRONG_AUDIENCE,
            f"Client assertion audience claim does not match the token endpoint: set 'aud' to '{expected}'.",
            check.client_id,
        )


def verify_client_assertion(
    assertion: str, certificates: Sequence[ClientCertificate], check: AssertionCheck
) -> ClientCertificate:
    """The registered certificate that signed ``assertion``; OAuthError (``invalid_client``) if
    the assertion is malformed, signed by another key, expired, or for another client or endpoint.
    """
    client_id = check.client_id
    try:
        header = jwt.get_unverified_header(assertion)
    except jwt.PyJWTError as exc:
        raise client_authentication_failed(
            oe.ASSERTION_MALFORMED, f"JWT token is invalid or malformed: {exc}.", client_id
        ) from None
    certificate = _certificate_for(header, certificates, client_id)
    key = certificate.public_key
    allowed = RSA_ALGORITHMS if isinstance(key, rsa.RSAPublicKey) else EC_ALGORITHMS
    algorithm = header.get("alg")
    if not isinstance(algorithm, str) or algorithm not in allowed:
        raise client_authentication_failed(
            oe.ASSERTION_MALFORMED,
            f"The client assertion is signed with {algorithm!r}; for this certificate's key use one of "
            f"{', '.join(allowed)}.",
            client_id,
        )
    skew = CLOCK_SKEW
    if not certificate.not_before - skew <= check.now <= certificate.not_after + skew:
        raise client_authentication_failed(
            oe.ASSERTION_KEY,
            f"The certificate '{certificate.thumbprint}' registered for application '{client_id}' is "
            f"valid only from {certificate.not_before.isoformat()} to {certificate.not_after.isoformat()}; "
            "register a current certificate.",
            client_id,
        )
    try:
        claims: dict[str, Any] = jwt.decode(
            assertion,
            key,
            algorithms=[algorithm],
            options={
                "verify_exp": False,
                "verify_nbf": False,
                "verify_iat": False,
                "verify_aud": False,
                "verify_iss": False,
                "require": _REQUIRED_CLAIMS,
            },
        )
    except jwt.InvalidSignatureError:
        raise client_authentication_failed(
            oe.ASSERTION_KEY,
            f"Client assertion failed signature validation with the certificate '{certificate.thumbprint}'.",
            client_id,
        ) from None
    except jwt.MissingRequiredClaimError as exc:
        raise client_authentication_failed(
            oe.ASSERTION_MALFORMED,
            f"The client assertion lacks the '{exc.claim}' claim (required: {', '.join(_REQUIRED_CLAIMS)}).",
            client_id,
        ) from None
    except (jwt.PyJWTError, ValueError, TypeError) as exc:
        raise client_authentication_failed(
            oe.ASSERTION_MALFORMED, f"JWT token is invalid or malformed: {exc}.", client_id
        ) from None
    _check_identity(claims, check)
    _check_time(claims, check)
    return certificate
