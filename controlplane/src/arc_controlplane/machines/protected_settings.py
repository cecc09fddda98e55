"""Protected settings of extensions: never kept in plain text (docs/extensions.md).

They are encrypted at once to the machine's extension certificate, as the VM extension handler
model has them (docs/reference/extensions.md): a PKCS#7 (CMS) enveloped message, DER, base64,
with the certificate's thumbprint (SHA-1 of its DER, upper-case hex) beside it. Handlers decrypt
it with ``openssl smime -decrypt -inform DER``. A keyed digest (HMAC-SHA-256, the key derived from
the control plane's own signing key, which is never in the database) tells a PUT of the same
protected settings from a new one without keeping them.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.ciphers import algorithms
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.serialization import pkcs7

MIN_KEY_BITS = 2048
MAX_CERTIFICATE_PEM = 16384
_DIGEST_INFO = b"hybridops-arc extension protected settings digest v1"


class CertificateError(ValueError):
    """The extension certificate an agent sent cannot be used (the message says why)."""


def load_extension_certificate(pem: str) -> x509.Certificate:
    """The certificate, checked: one PEM certificate with an RSA key of 2048 bits or more."""
    if len(pem) > MAX_CERTIFICATE_PEM:
        raise CertificateError(f"the certificate is longer than {MAX_CERTIFICATE_PEM} characters")
    try:
        certificate = x509.load_pem_x509_certificate(pem.encode("ascii"))
    except (ValueError, UnicodeEncodeError):
        raise CertificateError("not a PEM certificate (-----BEGIN CERTIFICATE-----)") from None
    key = certificate.public_key()
    if not isinstance(key, rsa.RSAPublicKey) or key.key_size < MIN_KEY_BITS:
        raise CertificateError(
            f"the certificate's key must be RSA of {MIN_KEY_BITS} bits or more (protected settings are"
            " encrypted to it as the VM extension handler model has them)"
        )
    return certificate


def thumbprint(certificate: x509.Certificate) -> str:
    """SHA-1 of the certificate's DER, upper-case hex: how handlers name it."""
    return certificate.fingerprint(hashes.SHA1()).hex().upper()  # noqa: S303 - a name, as the handler model has it


def canonical(settings: dict[str, Any]) -> bytes:
    return json.dumps(settings, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def encrypt(settings: dict[str, Any], certificate: x509.Certificate) -> str:
    """``settings`` as JSON in a CMS enveloped message to ``certificate`` (AES-256-CBC), base64."""
    envelope = (
        pkcs7.PKCS7EnvelopeBuilder()
        .set_data(canonical(settings))
        .set_content_encryption_algorithm(algorithms.AES256)
        .add_recipient(certificate)
        .encrypt(serialization.Encoding.DER, [pkcs7.PKCS7Options.Binary])
    )
    return base64.b64encode(envelope).decode("ascii")


def digest_key(signing_key: rsa.RSAPrivateKey) -> bytes:
    """The HMAC key, derived from the control plane's signing key (HKDF-SHA-256)."""
    secret = signing_key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_DIGEST_INFO).derive(secret)


def digest(settings: dict[str, Any], key: bytes) -> str:
    return hmac.new(key, canonical(settings), hashlib.sha256).hexdigest()
