"""The extension certificate: the handler model's transport certificate (docs/extensions.md). A
self-signed RSA 2048 certificate made once on this machine; its key stays here
(``<waagent>/<THUMBPRINT>.prv``, 0600, root's), the certificate beside it (``.crt``) and with the
control plane, which encrypts protected settings to it. Handlers decrypt with both files."""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import os
from pathlib import Path

from arc_agent.fsutil import write_atomic

LIFETIME = dt.timedelta(days=3650)
PEM_BEGIN, PEM_END = b"-----BEGIN CERTIFICATE-----", b"-----END CERTIFICATE-----"


def pem_thumbprint(pem: bytes) -> str | None:
    """The certificate's SHA-1 thumbprint (a name, as the handler model has it), from its PEM; None
    when it is not one. Read without the ``cryptography`` package: extd starts on demand, and
    only the first start, which makes the certificate, needs it."""
    begin, end = pem.find(PEM_BEGIN), pem.find(PEM_END)
    if begin < 0 or end < begin:
        return None
    try:
        der = base64.b64decode(b"".join(pem[begin + len(PEM_BEGIN) : end].split()), validate=True)
    except binascii.Error:
        return None
    return hashlib.sha1(der).hexdigest().upper() if der else None  # noqa: S324 - a name, not a check


def load_or_create(folder: Path) -> tuple[str, str]:
    """(thumbprint, certificate PEM) of the extension certificate in ``folder``, made when there
    is none (a certificate without its key does not count)."""
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(folder, 0o700)
    for crt in sorted(folder.glob("*.crt")):
        if crt.with_suffix(".prv").is_file():
            pem = crt.read_bytes()
            if crt.stem == pem_thumbprint(pem):
                return crt.stem, pem.decode("ascii")
    return _create(folder)


def _create(folder: Path) -> tuple[str, str]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

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
    print_ = certificate.fingerprint(hashes.SHA1()).hex().upper()  # noqa: S303 - a name
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    write_atomic(folder / f"{print_}.prv", key_pem, mode=0o600)
    pem = certificate.public_bytes(serialization.Encoding.PEM)
    write_atomic(folder / f"{print_}.crt", pem, mode=0o600)
    return print_, pem.decode("ascii")
