"""A service principal's certificate as ``connect`` and ``disconnect`` use it: read from one PEM
file (``--service-principal-cert``), and the ``private_key_jwt`` client assertion signed with
it for the token service (docs/control-plane.md)."""

from __future__ import annotations

import hashlib
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from arc_agent.errors import AzcmError, ErrorCode
from arc_agent.identity.jws import b64url, sign_compact
from arc_agent.identity.keys import CryptographySigner, PrivateKey

if TYPE_CHECKING:  # x509 costs himds megabytes of memory; only connect needs it (imported there)
    from cryptography import x509

CLIENT_ASSERTION_LIFETIME = 600


def load_certificate_credential(path: Path) -> tuple[PrivateKey, x509.Certificate]:
    """A service principal's certificate and key from one PEM file (``--service-principal-cert``).

    Password-protected files are not supported, as with the real agent (docs/reference/azcmagent.md).
    """
    try:
        pem = path.read_bytes()
    except OSError as exc:
        raise AzcmError(
            ErrorCode.INVALID_ARGUMENT, f"cannot read the certificate file {path}: {exc.strerror}"
        ) from None
    from cryptography import x509

    try:
        certificate = x509.load_pem_x509_certificate(pem)
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as exc:
        raise AzcmError(
            ErrorCode.INVALID_ARGUMENT,
            f"{path} must hold a PEM certificate and its unencrypted private key ({exc})",
        ) from None
    if not isinstance(key, (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey)):
        raise AzcmError(ErrorCode.INVALID_ARGUMENT, f"the key in {path} is neither RSA nor EC")
    return key, certificate


def client_assertion(key: PrivateKey, certificate: x509.Certificate, client_id: str, token_url: str) -> str:
    """A ``private_key_jwt`` client assertion for the token service (docs/control-plane.md)."""
    der = certificate.public_bytes(serialization.Encoding.DER)
    now = int(time.time())
    header = {
        "x5t": b64url(hashlib.sha1(der).digest()),  # noqa: S324 - x5t is SHA-1 by definition (RFC 7515)
        "x5t#S256": b64url(hashlib.sha256(der).digest()),
    }
    claims = {
        "aud": token_url,
        "iss": client_id,
        "sub": client_id,
        "iat": now,
        "nbf": now,
        "exp": now + CLIENT_ASSERTION_LIFETIME,
        "jti": uuid.uuid4().hex,
    }
    return sign_compact(CryptographySigner(key), header, claims)
