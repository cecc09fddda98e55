"""Client certificates of service principals: what ``sp create --certificate`` stores and what
the token service checks ``client_assertion`` signatures against.

Only certificates are stored (``Principal.certificate_pem``, one or more PEM blocks, so that a
new certificate can be added before the old one expires); a private key that came in the same
file is never kept.
"""

from __future__ import annotations

import base64
import datetime as dt
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

ClientPublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey


class CertificateError(ValueError):
    """The file holds no usable certificate; the message says why."""


@dataclass(frozen=True)
class ClientCertificate:
    certificate: x509.Certificate

    @property
    def public_key(self) -> ClientPublicKey:
        key = self.certificate.public_key()
        assert isinstance(key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey)  # checked on parse
        return key

    @property
    def sha1(self) -> bytes:
        """SHA-1 thumbprint (``x5t``); Entra and MSAL still identify certificates by it."""
        return self.certificate.fingerprint(hashes.SHA1())  # noqa: S303 - x5t thumbprint (RFC 7515), no security check

    @property
    def sha256(self) -> bytes:
        """SHA-256 thumbprint (``x5t#S256``)."""
        return self.certificate.fingerprint(hashes.SHA256())

    @property
    def thumbprint(self) -> str:
        """The SHA-1 thumbprint as Azure shows it: upper-case hex."""
        return self.sha1.hex().upper()

    @property
    def not_before(self) -> dt.datetime:
        return self.certificate.not_valid_before_utc

    @property
    def not_after(self) -> dt.datetime:
        return self.certificate.not_valid_after_utc

    def pem(self) -> str:
        return self.certificate.public_bytes(serialization.Encoding.PEM).decode("ascii")


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def parse_certificates(data: bytes) -> list[ClientCertificate]:
    """Every certificate in PEM ``data`` (other PEM blocks, such as a private key, are skipped).

    Raises CertificateError when there is none or one has a key that cannot sign JWTs.
    """
    if b"-----BEGIN CERTIFICATE-----" not in data:
        raise CertificateError("no PEM certificate ('-----BEGIN CERTIFICATE-----') found")
    try:
        loaded = x509.load_pem_x509_certificates(data)
    except ValueError as exc:
        raise CertificateError(f"not a valid PEM certificate: {exc}") from None
    for certificate in loaded:
        key = certificate.public_key()
        if not isinstance(key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey):
            raise CertificateError(
                f"the certificate {certificate.subject.rfc4514_string()!r} has a "
                f"{type(key).__name__} key; use an RSA or EC key"
            )
    return [ClientCertificate(certificate) for certificate in loaded]


def certificates_pem(certificates: list[ClientCertificate]) -> str:
    """The certificates alone, as PEM (what is stored)."""
    return "".join(certificate.pem() for certificate in certificates)
