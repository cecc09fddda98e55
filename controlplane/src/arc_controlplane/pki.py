"""The control plane's own CA and its HTTPS server certificate, kept under ``<data-dir>/pki``.

Files: ``ca.pem`` + ``ca.key`` (EC P-256, 10 years, ``CA:true, pathlen:0``) and ``server.pem`` +
``server.key`` (EC P-256, 1 year, ``serverAuth``) signed by that CA. Keys are written 0600 and
certificates 0644, each atomically. The CA is created once and reused; the server certificate is
re-issued when a wanted name is missing, fewer than 30 days remain, or it no longer matches
the CA or its key.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from ipaddress import IPv4Address, IPv6Address
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from arc_controlplane.errors import ControlPlaneError
from arc_controlplane.fsutil import ensure_private_dir, write_atomic
from arc_controlplane.names import ServerNames

LOG = logging.getLogger(__name__)

CA_VALIDITY = timedelta(days=3650)
SERVER_VALIDITY = timedelta(days=365)
RENEW_BEFORE = timedelta(days=30)
BACKDATE = timedelta(minutes=5)  # tolerate clients whose clock is slightly behind
KEY_MODE = 0o600
CERT_MODE = 0o644
CA_NAME_PREFIX = "hybridops.arc control plane CA"
SERVER_COMMON_NAME = "hybridops.arc control plane"

SigningKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


@dataclass(frozen=True)
class PkiFiles:
    directory: Path

    @property
    def ca_cert(self) -> Path:
        return self.directory / "ca.pem"

    @property
    def ca_key(self) -> Path:
        return self.directory / "ca.key"

    @property
    def server_cert(self) -> Path:
        return self.directory / "server.pem"

    @property
    def server_key(self) -> Path:
        return self.directory / "server.key"


@dataclass(frozen=True)
class CertificateAuthority:
    certificate: x509.Certificate
    key: SigningKey


@dataclass(frozen=True)
class ServerTls:
    """The files the HTTPS server uses, and what this start had to do to get them."""

    cert_file: Path
    key_file: Path
    ca_file: Path | None
    ca_created: bool = False
    issued_because: str | None = None
    """Why the server certificate was (re-)issued on this start; ``None`` if it was reused."""


def ensure_server_tls(pki_dir: Path, names: ServerNames, now: datetime | None = None) -> ServerTls:
    """Create or reuse the CA and the server certificate in ``pki_dir`` (created 0700)."""
    moment = now or datetime.now(UTC)
    files = PkiFiles(pki_dir)
    try:
        ensure_private_dir(pki_dir.parent)
        ensure_private_dir(pki_dir)
        ca, ca_created = _load_or_create_ca(files, moment)
        reason = _reissue_reason(files, ca, names, moment)
        if reason is not None:
            _issue_server_certificate(files, ca, names, moment)
            LOG.info("issued server certificate %s (%s)", files.server_cert, reason)
    except OSError as exc:
        target = exc.filename or pki_dir
        raise ControlPlaneError(f"cannot set up {target}: {exc.strerror or exc}") from None
    return ServerTls(files.server_cert, files.server_key, files.ca_cert, ca_created, reason)


def ensure_ca(pki_dir: Path, now: datetime | None = None) -> CertificateAuthority:
    """Create or reuse the control plane's CA in ``pki_dir`` (created 0700); no server certificate.

    ``init`` uses it; the agent API signs machine credentials with it.
    """
    moment = now or datetime.now(UTC)
    files = PkiFiles(pki_dir)
    try:
        ensure_private_dir(pki_dir.parent)
        ensure_private_dir(pki_dir)
        ca, _ = _load_or_create_ca(files, moment)
    except OSError as exc:
        target = exc.filename or pki_dir
        raise ControlPlaneError(f"cannot set up {target}: {exc.strerror or exc}") from None
    return ca


def read_ca_certificate(pki_dir: Path) -> bytes:
    """The CA certificate PEM, checked to be a certificate."""
    path = PkiFiles(pki_dir).ca_cert
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ControlPlaneError(
            f"no CA in {pki_dir}; start 'arc-controlplane serve' once to create it"
        ) from None
    except OSError as exc:
        raise ControlPlaneError(f"cannot read {path}: {exc.strerror or exc}") from None
    _parse_certificate(path, data)
    return data


def check_key_pair(cert_file: Path, key_file: Path) -> None:
    """Check that an operator-given certificate and key are readable, PEM, and belong together."""
    certificate = _parse_certificate(cert_file, _read(cert_file, "--cert"))
    key = _parse_private_key(key_file, _read(key_file, "--key"))
    if _public_der(certificate.public_key()) != _public_der(key.public_key()):
        raise ControlPlaneError(f"the key in {key_file} does not belong to the certificate in {cert_file}")


def check_covers(cert_file: Path, names: Iterable[str]) -> None:
    """Check that an operator-given certificate names each of ``names`` (exactly or by a
    ``*.`` wildcard of one label)."""
    covered = certificate_names(_parse_certificate(cert_file, _read(cert_file, "--cert"))).dns
    missing = [name for name in names if name not in covered and f"*.{name.partition('.')[2]}" not in covered]
    if missing:
        raise ControlPlaneError(
            f"the certificate in {cert_file} does not name {', '.join(missing)} (--endpoint-domain):"
            " add them (or wildcards) to its subjectAltName, or leave --endpoint-domain out"
        )


# --- CA ----------------------------------------------------------------------------------------


def _load_or_create_ca(files: PkiFiles, now: datetime) -> tuple[CertificateAuthority, bool]:
    has_cert, has_key = files.ca_cert.exists(), files.ca_key.exists()
    if has_cert and has_key:
        return _load_ca(files), False
    if has_cert or has_key:
        present, absent = (files.ca_cert, files.ca_key) if has_cert else (files.ca_key, files.ca_cert)
        raise ControlPlaneError(
            f"{present} exists but {absent} does not; restore it, or move {present} away to create a new CA"
        )
    ca = _create_ca(now)
    # The key first: a crash in between leaves a key without a certificate, reported above,
    # never a certificate whose key is lost.
    write_atomic(files.ca_key, _private_pem(ca.key), KEY_MODE)
    write_atomic(files.ca_cert, ca.certificate.public_bytes(serialization.Encoding.PEM), CERT_MODE)
    LOG.info("created CA %s (%s)", files.ca_cert, ca.certificate.subject.rfc4514_string())
    return ca, True


def _load_ca(files: PkiFiles) -> CertificateAuthority:
    certificate = _parse_certificate(files.ca_cert, _read(files.ca_cert, "the CA certificate"))
    key = _parse_private_key(files.ca_key, _read(files.ca_key, "the CA key"))
    if _public_der(certificate.public_key()) != _public_der(key.public_key()):
        raise ControlPlaneError(f"{files.ca_key} does not belong to {files.ca_cert}")
    try:
        constraints = certificate.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        constraints = None
    if constraints is None or not constraints.ca:
        raise ControlPlaneError(f"{files.ca_cert} is not a CA certificate")
    return CertificateAuthority(certificate, key)


def _create_ca(now: datetime) -> CertificateAuthority:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{CA_NAME_PREFIX} {secrets.token_hex(4)}")])
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + CA_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(key_cert_sign=True, crl_sign=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return CertificateAuthority(certificate, key)


# --- server certificate ------------------------------------------------------------------------


def _reissue_reason(
    files: PkiFiles, ca: CertificateAuthority, wanted: ServerNames, now: datetime
) -> str | None:
    if not files.server_cert.exists() or not files.server_key.exists():
        return "no server certificate yet"
    try:
        certificate = _parse_certificate(files.server_cert, _read(files.server_cert, "the certificate"))
        key = _parse_private_key(files.server_key, _read(files.server_key, "the key"))
    except ControlPlaneError as exc:
        return f"replacing an unusable one: {exc}"
    try:
        certificate.verify_directly_issued_by(ca.certificate)
    except (ValueError, TypeError, InvalidSignature):
        return "the existing one was not issued by the current CA"
    if _public_der(certificate.public_key()) != _public_der(key.public_key()):
        return "the existing key does not match the certificate"
    missing = wanted.missing_from(certificate_names(certificate))
    if missing:
        return "names missing from the existing one: " + ", ".join(missing)
    expires = not_valid_after(certificate)
    if expires - now < RENEW_BEFORE:
        return f"the existing one expires on {expires:%Y-%m-%d}"
    return None


def _issue_server_certificate(
    files: PkiFiles, ca: CertificateAuthority, names: ServerNames, now: datetime
) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    alt_names: list[x509.GeneralName] = [x509.DNSName(name) for name in sorted(names.dns)]
    alt_names += [x509.IPAddress(ip) for ip in sorted(names.ips, key=lambda ip: (ip.version, int(ip)))]
    ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca.key.public_key())
    certificate = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, SERVER_COMMON_NAME)]))
        .issuer_name(ca.certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(min(now + SERVER_VALIDITY, not_valid_after(ca.certificate)))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(digital_signature=True), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False)
        .sign(ca.key, hashes.SHA256())
    )
    write_atomic(files.server_key, _private_pem(key), KEY_MODE)
    write_atomic(files.server_cert, certificate.public_bytes(serialization.Encoding.PEM), CERT_MODE)


def certificate_names(certificate: x509.Certificate) -> ServerNames:
    """The DNS names and IP addresses in a certificate's subjectAltName."""
    try:
        san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return ServerNames(frozenset(), frozenset())
    dns = frozenset(name.lower() for name in san.get_values_for_type(x509.DNSName))
    ips = frozenset(
        ip for ip in san.get_values_for_type(x509.IPAddress) if isinstance(ip, (IPv4Address, IPv6Address))
    )
    return ServerNames(dns, ips)


def not_valid_after(certificate: x509.Certificate) -> datetime:
    """The end of validity as an aware UTC datetime (on cryptography 41 and later)."""
    value = getattr(certificate, "not_valid_after_utc", None)
    if isinstance(value, datetime):
        return value
    return certificate.not_valid_after.replace(tzinfo=UTC)


# --- helpers -----------------------------------------------------------------------------------


def _key_usage(
    *, digital_signature: bool = False, key_cert_sign: bool = False, crl_sign: bool = False
) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=digital_signature,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=key_cert_sign,
        crl_sign=crl_sign,
        encipher_only=False,
        decipher_only=False,
    )


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ControlPlaneError(f"cannot read {what} {path}: {exc.strerror or exc}") from None


def _parse_certificate(path: Path, data: bytes) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificates(data)[0]
    except (ValueError, IndexError):
        raise ControlPlaneError(f"{path} does not hold a PEM certificate") from None


def _parse_private_key(path: Path, data: bytes) -> SigningKey:
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except TypeError:
        raise ControlPlaneError(f"{path} holds an encrypted key; give an unencrypted one") from None
    except (ValueError, UnsupportedAlgorithm):
        raise ControlPlaneError(f"{path} does not hold a PEM private key") from None
    if not isinstance(key, (ec.EllipticCurvePrivateKey, rsa.RSAPrivateKey)):
        raise ControlPlaneError(f"{path}: only EC and RSA keys are supported")
    return key


def _private_pem(key: SigningKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _public_der(key: CertificatePublicKeyTypes) -> bytes:
    return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
