"""The machine's key pair with the ``cryptography`` package: generated at connect and at
renewal, written, read back. (himds signs its assertions through ``identity.signer``, without
this package.)

The machine key is RSA 2048 (docs/agent-protocol.md §2: the cheaper one for the control plane
to verify). It is generated on the machine and written at once with its final mode, 0640
root:himds (himds signs the assertions; nobody else may read it).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Union

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from arc_agent.errors import AzcmError, ErrorCode
from arc_agent.fsutil import write_atomic
from arc_agent.identity.keyfile import damaged_key
from arc_agent.privileges import himds_ids

PrivateKey = Union[rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey]


def generate_machine_key() -> rsa.RSAPrivateKey:
    try:
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    except Exception as exc:  # cryptography reports backend failures in several ways
        raise AzcmError(
            ErrorCode.RSA_KEY_GENERATION_FAILED, f"cannot generate the machine key: {exc}"
        ) from None


def save_private_key(path: Path, key: PrivateKey) -> None:
    """Write ``key`` (PEM, unencrypted): mode 0600, owned by himds (root writes it for himds at
    connect; himds writes its renewed keys itself), so only himds and root can read it."""
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    ids = himds_ids() if os.geteuid() == 0 else None
    path.parent.mkdir(parents=True, exist_ok=True)
    if ids is None:
        write_atomic(path, pem, mode=0o600)
    else:
        write_atomic(path, pem, mode=0o600, owner=ids[0], group=ids[1])


def parse_private_key(pem: bytes, path: Path) -> PrivateKey:
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError):
        raise damaged_key(path) from None
    if not isinstance(key, (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey)):
        raise AzcmError(ErrorCode.PRIVATE_KEY_UNAVAILABLE, f"the machine key {path} is not RSA or EC")
    return key


def public_key_pem(key: PrivateKey) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


_EC_ALGORITHMS: dict[str, tuple[str, hashes.HashAlgorithm]] = {
    "secp256r1": ("ES256", hashes.SHA256()),
    "secp384r1": ("ES384", hashes.SHA384()),
    "secp521r1": ("ES512", hashes.SHA512()),
}


class CryptographySigner:
    """A JWS signer over a key of the ``cryptography`` package: RS256, or ES256/384/512 (r || s)."""

    def __init__(self, key: PrivateKey) -> None:
        self.key = key
        self._digest: hashes.HashAlgorithm
        if isinstance(key, rsa.RSAPrivateKey):
            self.algorithm, self._digest = "RS256", hashes.SHA256()
        elif key.curve.name in _EC_ALGORITHMS:
            self.algorithm, self._digest = _EC_ALGORITHMS[key.curve.name]
        else:
            raise AzcmError(ErrorCode.SIGNING_FAILED, f"EC keys on {key.curve.name} are not supported")

    def sign(self, data: bytes) -> bytes:
        key = self.key
        try:
            if isinstance(key, rsa.RSAPrivateKey):
                return key.sign(data, padding.PKCS1v15(), self._digest)
            size = (key.curve.key_size + 7) // 8
            r, s = decode_dss_signature(key.sign(data, ec.ECDSA(self._digest)))
            return r.to_bytes(size, "big") + s.to_bytes(size, "big")
        except Exception as exc:  # cryptography reports backend failures in several ways
            raise AzcmError(ErrorCode.SIGNING_FAILED, f"cannot sign with the key: {exc}") from None
