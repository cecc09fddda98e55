"""Checking extension and agent packages before they run (arc_agent.cpclient.packages): size, SHA-256 and the
control plane's ES256 signature, made here as the control plane makes it (a JWS with PyJWT)."""

from __future__ import annotations

import hashlib
import re
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from extd_helpers import jwks

from arc_agent.cpclient.packages import (
    AGENT_SIGNATURE_TYPE,
    SIGNATURE_TYPE,
    PackageRefused,
    verify,
    verify_agent,
)

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


def test_agent_packages_are_checked_alike_with_their_own_signature_type() -> None:
    expected = {**EXPECTED, "version": "1.70.1.2", "target": "cp311-x86_64"}
    claims = {k: expected[k] for k in ("version", "target", "sha256", "size")}
    good = jwt.encode(claims, KEY, algorithm="ES256", headers={"kid": "k1", "typ": AGENT_SIGNATURE_TYPE})
    verify_agent(DATA, expected, good, jwks(KEY))
    other_target = jwt.encode(
        {**claims, "target": "cp39-x86_64"},
        KEY,
        algorithm="ES256",
        headers={"kid": "k1", "typ": AGENT_SIGNATURE_TYPE},
    )
    with pytest.raises(PackageRefused, match=re.escape("for another package (target differ)")):
        verify_agent(DATA, expected, other_target, jwks(KEY))
    # an extension's signature does not pass for an agent package, even over the same bytes
    with pytest.raises(PackageRefused, match="not an ES256 package signature"):
        verify_agent(DATA, expected, sign(KEY, version="1.70.1.2"), jwks(KEY))
    with pytest.raises(PackageRefused, match="SHA-256 is"):
        verify_agent(DATA[:-1] + b"?", expected, good, jwks(KEY))
