"""The control plane's keys in DATA_DIR/keys, created once: the token signing key (RSA 2048,
published as a JWKS) and the package-signing key (EC P-256: agents check the signature of every
extension package with it, docs/extensions.md)."""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from arc_controlplane.errors import ControlPlaneError
from arc_controlplane.fsutil import ensure_private_dir, write_atomic


def _b64url_uint(value: int, length: int = 0) -> str:
    """Base64url of ``value``, big-endian: in its fewest bytes (RSA's ``n`` and ``e``), or in
    ``length`` bytes (an EC coordinate is always the curve's full size, RFC 7518 6.2.1.2: one with
    a leading zero byte would be refused by JOSE libraries)."""
    raw = value.to_bytes(max(length, (value.bit_length() + 7) // 8), "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


@dataclass(frozen=True)
class SigningKey:
    private_key: rsa.RSAPrivateKey
    kid: str

    def jwk(self) -> dict[str, Any]:
        numbers = self.private_key.public_key().public_numbers()
        return {
            "kty": "RSA",
            "use": "sig",
            "alg": "RS256",
            "kid": self.kid,
            "n": _b64url_uint(numbers.n),
            "e": _b64url_uint(numbers.e),
        }

    def jwks(self) -> dict[str, Any]:
        return {"keys": [self.jwk()]}


def _kid_of(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> str:
    der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.urlsafe_b64encode(hashlib.sha256(der).digest()[:20]).rstrip(b"=").decode()


def load_or_create_signing_key(keys_dir: Path) -> SigningKey:
    path = keys_dir / "token-signing.pem"
    if path.exists():
        try:
            loaded = serialization.load_pem_private_key(path.read_bytes(), password=None)
        except (OSError, ValueError) as exc:
            raise ControlPlaneError(f"cannot read the token signing key {path}: {exc}") from None
        if not isinstance(loaded, rsa.RSAPrivateKey):
            raise ControlPlaneError(f"{path} is not an RSA private key")
        return SigningKey(loaded, _kid_of(loaded))
    ensure_private_dir(keys_dir)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    write_atomic(path, pem, 0o600)
    return SigningKey(key, _kid_of(key))


P256_COORDINATE_BYTES = 32


@dataclass(frozen=True)
class PackageSigningKey:
    private_key: ec.EllipticCurvePrivateKey
    kid: str

    def jwk(self) -> dict[str, Any]:
        numbers = self.private_key.public_key().public_numbers()
        return {
            "kty": "EC",
            "use": "sig",
            "alg": "ES256",
            "crv": "P-256",
            "kid": self.kid,
            "x": _b64url_uint(numbers.x, P256_COORDINATE_BYTES),
            "y": _b64url_uint(numbers.y, P256_COORDINATE_BYTES),
        }


def load_or_create_package_key(keys_dir: Path) -> PackageSigningKey:
    """The package-signing key (``package-signing.pem``), made on first use."""
    path = keys_dir / "package-signing.pem"
    if path.exists():
        try:
            loaded = serialization.load_pem_private_key(path.read_bytes(), password=None)
        except (OSError, ValueError) as exc:
            raise ControlPlaneError(f"cannot read the package-signing key {path}: {exc}") from None
        if not isinstance(loaded, ec.EllipticCurvePrivateKey):
            raise ControlPlaneError(f"{path} is not an EC private key")
        return PackageSigningKey(loaded, _kid_of(loaded))
    ensure_private_dir(keys_dir)
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    write_atomic(path, pem, 0o600)
    return PackageSigningKey(key, _kid_of(key))
