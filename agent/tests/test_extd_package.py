"""Checking extension packages before they run (arc_agent.extd.package): size, SHA-256 and the
control plane's ES256 signature, made here as the control plane makes it (a JWS with PyJWT)."""

from __future__ import annotations

import hashlib
import re
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from extd_helpers import jwks

from arc_agent.extd.package import SIGNATURE_TYPE, PackageRefused, verify

DATA = b"PK\x03\x04 a handler package"
PUBLISHER, TYPE = "Microsoft.Azure.Extensions", "CustomScript"


def sign(key: ec.EllipticCurvePrivateKey, kid: str = "k1", **changes: Any) -> str:
    claims = {
        "publisher": PUBLISHER,
        "type": TYPE,
        "version": "2.1.0",
        "sha256": hashlib.sha256(DATA).hexdigest(),
        "size": len(DATA),
    }
    claims.update(changes)
    return jwt.encode(claims, key, algorithm="ES256", headers={"kid": kid, "typ": SIGNATURE_TYPE})


EXPECTED = {"version": "2.1.0", "sha256": hashlib.sha256(DATA).hexdigest(), "size": len(DATA)}
KEY = ec.generate_private_key(ec.SECP256R1())
HMAC_SECRET = "a-secret-of-thirty-two-bytes-or-more!"


def test_the_package_the_goal_state_names_and_the_control_plane_signed_passes() -> None:
    verify(DATA, EXPECTED, sign(KEY), jwks(KEY), publisher=PUBLISHER.lower(), type_=TYPE)


@pytest.mark.parametrize(
    "data, signature, keys, says",
    [
        (DATA + b"!", sign(KEY), jwks(KEY), "bytes, not the"),
        (DATA[:-1] + b"?", sign(KEY), jwks(KEY), "SHA-256 is"),
        (DATA, sign(ec.generate_private_key(ec.SECP256R1())), jwks(KEY), "does not verify"),
        (DATA, sign(KEY, kid="other"), jwks(KEY), "a key this machine does not know"),
        (DATA, sign(KEY, version="2.2.0"), jwks(KEY), "for another package (version differ)"),
        (DATA, "not.a.jws!", jwks(KEY), "not a JWS"),
        (
            DATA,
            jwt.encode({"a": 1}, HMAC_SECRET, algorithm="HS256", headers={"typ": SIGNATURE_TYPE}),
            jwks(KEY),
            "not an ES256",
        ),
    ],
)
def test_anything_else_is_refused_naming_the_check(
    data: bytes, signature: str, keys: dict[str, Any], says: str
) -> None:
    with pytest.raises(PackageRefused, match=re.escape(says)):
        verify(data, EXPECTED, signature, keys, publisher=PUBLISHER, type_=TYPE)
