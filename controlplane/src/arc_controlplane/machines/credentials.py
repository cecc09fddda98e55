"""Machine credentials: the agent's public key, and the X.509 certificate over it.

The agent makes its key pair itself and sends only the public key (PEM SubjectPublicKeyInfo;
RSA of 2048 to 8192 bits, or EC P-256). The control plane answers with a certificate over that
key, subject ``CN=<vmId>``, valid ``CREDENTIAL_LIFETIME`` (90 days), signed by its own CA
(``pki.ensure_ca``). The certificate's end of validity is the credential's expiry
(``Machine.credential_not_after``); later calls are authenticated by assertions signed with the
same key (``api/agent/assertions.py``).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import threading
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from arc_controlplane.machines.status import CREDENTIAL_LIFETIME
from arc_controlplane.pki import CertificateAuthority, ensure_ca, not_valid_after

MIN_RSA_BITS = 2048
MAX_RSA_BITS = 8192
"""Larger keys only make every signature check slower; no agent needs them."""
MAX_PUBLIC_KEY_PEM_CHARS = 4096
"""An 8192-bit RSA key is about 1,500 characters of PEM."""
BACKDATE = dt.timedelta(minutes=5)
"""Certificates start a little in the past, for machines whose clock is slightly behind."""

MachinePublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey


class InvalidPublicKey(ValueError):
    """The public key is not PEM, or of a kind or size the control plane does not accept."""


@dataclass(frozen=True)
class MachineCredential:
    certificate_pem: str
    not_after: dt.datetime
    """End of the certificate's validity: aware UTC, whole seconds."""


def load_public_key(pem: str) -> MachinePublicKey:
    """The key in ``pem`` (SubjectPublicKeyInfo), if it is RSA 2048-8192 bits or EC P-256."""
    if len(pem) > MAX_PUBLIC_KEY_PEM_CHARS:
        raise InvalidPublicKey(f"the public key is longer than {MAX_PUBLIC_KEY_PEM_CHARS} characters")
    try:
        key = serialization.load_pem_public_key(pem.encode("ascii"))
    except (ValueError, UnicodeEncodeError, UnsupportedAlgorithm):
        raise InvalidPublicKey(
            "the public key is not a PEM SubjectPublicKeyInfo ('-----BEGIN PUBLIC KEY-----')"
        ) from None
    if isinstance(key, rsa.RSAPublicKey):
        if not MIN_RSA_BITS <= key.key_size <= MAX_RSA_BITS:
            raise InvalidPublicKey(
                f"the RSA key has {key.key_size} bits; use {MIN_RSA_BITS} to {MAX_RSA_BITS} bits"
            )
        return key
    if isinstance(key, ec.EllipticCurvePublicKey):
        if not isinstance(key.curve, ec.SECP256R1):
            raise InvalidPublicKey(f"the EC key is on curve {key.curve.name}; use P-256 (secp256r1)")
        return key
    raise InvalidPublicKey("the public key is neither RSA nor EC; use RSA (2048 bits or more) or EC P-256")


def public_key_pem(key: MachinePublicKey) -> str:
    """The canonical PEM form of ``key``: what is stored, so equal keys have equal text."""
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode("ascii")


def pem_fingerprint(pem: str) -> bytes:
    """A short digest of a stored (canonical) PEM, to key caches of parsed keys."""
    return hashlib.sha256(pem.encode("ascii")).digest()


def assertion_algorithm(key: MachinePublicKey) -> str:
    """The JWS algorithm of assertions signed by the private half of ``key``."""
    return "RS256" if isinstance(key, rsa.RSAPublicKey) else "ES256"


def issue_credential(
    ca: CertificateAuthority, key: MachinePublicKey, vm_id: str, now: dt.datetime
) -> MachineCredential:
    """A client certificate over ``key`` for machine ``vm_id``, valid ``CREDENTIAL_LIFETIME``."""
    start = now.replace(microsecond=0)
    end = min(start + CREDENTIAL_LIFETIME, not_valid_after(ca.certificate))
    ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca.key.public_key())
    certificate = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, vm_id)]))
        .issuer_name(ca.certificate.subject)
        .public_key(key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(start - BACKDATE)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False)
        .sign(ca.key, hashes.SHA256())
    )
    pem = certificate.public_bytes(serialization.Encoding.PEM).decode("ascii")
    return MachineCredential(pem, not_valid_after(certificate))


class CaLoader:
    """The control plane's CA, loaded (or created) on first use and then kept for the process.

    One per application; thread-safe. ``pki.ensure_ca`` creates the CA in ``pki_dir`` when it is
    missing, which is also the case when the server runs with an operator's ``--cert``.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loaded: dict[Path, CertificateAuthority] = {}

    def get(self, pki_dir: Path) -> CertificateAuthority:
        with self._lock:
            ca = self._loaded.get(pki_dir)
            if ca is None:
                ca = ensure_ca(pki_dir)
                self._loaded[pki_dir] = ca
            return ca
