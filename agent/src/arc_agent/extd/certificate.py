"""The extension certificate: the handler model's transport certificate (docs/extensions.md). A
self-signed RSA 2048 certificate made once on this machine; its key stays here
(``<waagent>/<THUMBPRINT>.prv``, 0600, root's), the certificate beside it (``.crt``) and with the
control plane, which encrypts protected settings to it. Handlers decrypt with both files."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from arc_agent.fsutil import write_atomic

LIFETIME = dt.timedelta(days=3650)


def thumbprint(certificate: x509.Certificate) -> str:
    return certificate.fingerprint(hashes.SHA1()).hex().upper()  # noqa: S303 - a name, as the handler model has it


def load_or_create(folder: Path) -> tuple[str, str]:
    """(thumbprint, certificate PEM) of the extension certificate in ``folder``, made when there
    is none (a certificate without its key does not count)."""
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(folder, 0o700)
    for crt in sorted(folder.glob("*.crt")):
        if crt.with_suffix(".prv").is_file():
            try:
                certificate = x509.load_pem_x509_certificate(crt.read_bytes())
            except ValueError:
                continue
            if crt.stem == thumbprint(certificate):
                return crt.stem, crt.read_text(encoding="ascii")
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    common_name = "Azure Connected Machine extension certificate"
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = dt.datetime.now(dt.timezone.utc)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + LIFETIME)
        .sign(key, hashes.SHA256())
    )
    print_ = thumbprint(certificate)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    write_atomic(folder / f"{print_}.prv", key_pem, mode=0o600)
    pem = certificate.public_bytes(serialization.Encoding.PEM)
    write_atomic(folder / f"{print_}.crt", pem, mode=0o600)
    return print_, pem.decode("ascii")
