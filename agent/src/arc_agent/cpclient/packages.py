"""Checking a package from the control plane before anything of it runs: its size and SHA-256
against what the control plane announced, and the control plane's signature over them (a JWS,
ES256, with its package-signing key; docs/agent-protocol.md, 5.8 and 5.9). Extension handler
packages (docs/extensions.md), agent packages (docs/agent-upgrade.md) and machine configuration
packages (docs/machine-configuration.md) are signed alike, each with its own ``typ``. Pure: bytes
in, a verdict out."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric import ec

# ``cryptography`` is imported when a signature is checked, not with this module: extd starts on
# demand (docs/architecture.md), and most of its starts check no package.

SIGNATURE_TYPE = "hybridops-arc-extension-package+jws"
AGENT_SIGNATURE_TYPE = "hybridops-arc-agent-package+jws"
CONFIGURATION_SIGNATURE_TYPE = "hybridops-arc-configuration-package+jws"


class PackageRefused(ValueError):
    """The package must not run; the message says which check failed."""


def _b64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _public_key(jwk: Mapping[str, Any]) -> ec.EllipticCurvePublicKey:
    from cryptography.hazmat.primitives.asymmetric import ec

    if jwk.get("kty") != "EC" or jwk.get("crv") != "P-256":
        raise PackageRefused("the package-signing key is not an EC P-256 key")
    x = int.from_bytes(_b64url(str(jwk["x"])), "big")
    y = int.from_bytes(_b64url(str(jwk["y"])), "big")
    return ec.EllipticCurvePublicNumbers(x, y, ec.SECP256R1()).public_key()


def signed_claims(signature: str, keys: Mapping[str, Any], typ: str = SIGNATURE_TYPE) -> dict[str, Any]:
    """The claims of ``signature`` (a compact JWS of type ``typ``) once verified with one of
    ``keys`` (a JWKS); PackageRefused otherwise."""
    try:
        header_part, payload_part, signature_part = signature.strip().split(".")
        header = json.loads(_b64url(header_part))
        claims = json.loads(_b64url(payload_part))
        raw = _b64url(signature_part)
    except (ValueError, binascii.Error):
        raise PackageRefused("the package's signature is not a JWS") from None
    if header.get("alg") != "ES256" or header.get("typ") != typ or len(raw) != 64:
        raise PackageRefused("the package's signature is not an ES256 package signature")
    candidates = [k for k in keys.get("keys", []) if k.get("kid") == header.get("kid")]
    if not candidates:
        raise PackageRefused("the package was signed with a key this machine does not know")
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

    der = encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))
    try:
        _public_key(candidates[0]).verify(
            der, f"{header_part}.{payload_part}".encode(), ec.ECDSA(hashes.SHA256())
        )
    except InvalidSignature:
        raise PackageRefused("the package's signature does not verify with the package-signing key") from None
    if not isinstance(claims, dict):
        raise PackageRefused("the package's signature signs no claims")
    return claims


def _check(
    data: bytes,
    expected: Mapping[str, Any],
    signature: str,
    keys: Mapping[str, Any],
    typ: str,
    wanted: Mapping[str, Any],
    any_case: tuple[str, ...] = (),
) -> None:
    """PackageRefused unless ``data`` has the size and SHA-256 ``expected`` announces and the
    signature signs exactly ``wanted`` with them (``any_case`` claims compare without case)."""
    digest = hashlib.sha256(data).hexdigest()
    if len(data) != int(expected.get("size", -1)):
        raise PackageRefused(f"the package has {len(data)} bytes, not the {expected.get('size')} announced")
    if digest != str(expected.get("sha256", "")).lower():
        raise PackageRefused(f"the package's SHA-256 is {digest}, not the {expected.get('sha256')} announced")
    claims = signed_claims(signature, keys, typ)
    signed = {**wanted, "sha256": digest, "size": len(data)}
    differing = sorted(
        key
        for key, value in signed.items()
        if (
            str(claims.get(key)).lower() != str(value).lower()
            if key in any_case
            else claims.get(key) != value
        )
    )
    if differing:
        raise PackageRefused(
            f"the package's signature is for another package ({', '.join(differing)} differ)"
        )


def verify(
    data: bytes,
    expected: Mapping[str, Any],
    signature: str,
    keys: Mapping[str, Any],
    *,
    publisher: str,
    type_: str,
) -> None:
    """PackageRefused unless ``data`` is the extension package the goal state names
    (``expected``: version, sha256, size) and the control plane signed exactly that."""
    wanted = {"publisher": publisher, "type": type_, "version": str(expected.get("version"))}
    # Publisher and type compare without regard to case, as ARM names do.
    _check(data, expected, signature, keys, SIGNATURE_TYPE, wanted, ("publisher", "type"))


def verify_agent(data: bytes, expected: Mapping[str, Any], signature: str, keys: Mapping[str, Any]) -> None:
    """PackageRefused unless ``data`` is the agent package the store lists (``expected``:
    version, target, sha256, size) and the control plane signed exactly that."""
    wanted = {"version": str(expected.get("version")), "target": str(expected.get("target"))}
    _check(data, expected, signature, keys, AGENT_SIGNATURE_TYPE, wanted)


def verify_configuration(
    data: bytes,
    expected: Mapping[str, Any],
    signature: str,
    keys: Mapping[str, Any],
    *,
    name: str,
    version: str,
) -> None:
    """PackageRefused unless ``data`` is the machine configuration package an assignment names
    (``expected``: sha256, size) and the control plane signed exactly that (docs/agent-protocol.md, 5.10)."""
    _check(
        data,
        expected,
        signature,
        keys,
        CONFIGURATION_SIGNATURE_TYPE,
        {"name": name, "version": version},
        ("name",),
    )
