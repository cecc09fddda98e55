"""Secrets, roles and scopes, token issue and verification: pure logic."""

from __future__ import annotations

import base64
import datetime as dt
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from arc_controlplane.auth.keys import PackageSigningKey, load_or_create_signing_key
from arc_controlplane.auth.roles import find_role, scope_covers
from arc_controlplane.auth.secrets import hash_secret, new_secret, verify_secret
from arc_controlplane.auth.tokens import InvalidToken, TokenIssuer

NOW = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
SUB = "/subscriptions/00000000-0000-0000-0000-000000000001"


def test_secrets_are_hashed_with_salt_and_verified() -> None:
    secret = new_secret()
    assert len(secret) >= 40
    stored = hash_secret(secret)
    assert secret not in stored
    assert stored != hash_secret(secret)
    assert verify_secret(secret, stored)
    assert not verify_secret(secret + "x", stored)
    assert not verify_secret(secret, "garbage")


def test_onboarding_may_create_and_read_but_not_delete_machines() -> None:
    role = find_role("Onboarding")
    assert role.name == "Azure Connected Machine Onboarding"
    assert role.allows("Microsoft.HybridCompute/machines/write")
    assert role.allows("microsoft.hybridcompute/MACHINES/read")
    assert not role.allows("Microsoft.HybridCompute/machines/delete")
    assert not role.allows("Microsoft.HybridCompute/machines/extensions/write")


def test_resource_administrator_and_reader() -> None:
    admin = find_role("resource administrator")
    assert admin.allows("Microsoft.HybridCompute/machines/delete")
    assert admin.allows("Microsoft.HybridCompute/machines/extensions/write")
    assert not admin.allows("Microsoft.Resources/subscriptions/resourceGroups/write")
    reader = find_role("Reader")
    assert reader.allows("Microsoft.HybridCompute/machines/read")
    assert not reader.allows("Microsoft.HybridCompute/machines/write")


def test_unknown_role_lists_the_roles() -> None:
    with pytest.raises(ValueError, match="Azure Connected Machine Onboarding"):
        find_role("Contributor")


def test_scopes_cover_their_children_only() -> None:
    rg = f"{SUB}/resourceGroups/Prod"
    machine = f"{rg}/providers/Microsoft.HybridCompute/machines/h1"
    assert scope_covers(SUB, machine)
    assert scope_covers(rg.lower(), machine)
    assert scope_covers(rg, rg)
    assert not scope_covers(f"{SUB}/resourceGroups/Pro", machine)
    assert not scope_covers(machine, rg)


def test_signing_key_is_created_once_private_and_reused(tmp_path: Path) -> None:
    first = load_or_create_signing_key(tmp_path / "keys")
    assert (tmp_path / "keys" / "token-signing.pem").stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "keys").stat().st_mode & 0o777 == 0o700
    second = load_or_create_signing_key(tmp_path / "keys")
    assert first.kid == second.kid
    assert first.jwks()["keys"][0]["kid"] == first.kid


def test_tokens_verify_with_the_published_key_and_refuse_tampering(tmp_path: Path) -> None:
    issuer = TokenIssuer(load_or_create_signing_key(tmp_path), "https://cp.test:8443")
    issued = issuer.issue(
        tenant_id="t",
        object_id="o",
        app_id="a",
        audience="https://management.azure.com/",
        lifetime=dt.timedelta(hours=1),
        now=dt.datetime.now(dt.UTC),
    )
    claims = issuer.verify(issued.token, issuer.management_audiences())
    assert claims["iss"] == "https://cp.test:8443/t/v2.0"
    assert (claims["oid"], claims["appid"], claims["tid"]) == ("o", "a", "t")
    # Anyone can verify with the JWKS alone.
    public = jwt.PyJWK(issuer.key.jwk()).key
    assert jwt.decode(issued.token, public, algorithms=["RS256"], audience="https://management.azure.com/")
    with pytest.raises(InvalidToken):
        issuer.verify(issued.token, ["https://vault.azure.net"])
    with pytest.raises(InvalidToken):
        issuer.verify(issued.token[:-4] + "AAAA", issuer.management_audiences())
    other = TokenIssuer(load_or_create_signing_key(tmp_path / "other"), "https://cp.test:8443")
    with pytest.raises(InvalidToken):
        other.verify(issued.token, issuer.management_audiences())


def test_expired_tokens_are_refused(tmp_path: Path) -> None:
    issuer = TokenIssuer(load_or_create_signing_key(tmp_path), "https://cp.test")
    issued = issuer.issue(
        tenant_id="t",
        object_id="o",
        app_id="a",
        audience="https://cp.test",
        lifetime=dt.timedelta(hours=1),
        now=NOW,
    )
    with pytest.raises(InvalidToken, match="expired"):
        issuer.verify(issued.token, ["https://cp.test"])


def test_package_key_coordinates_are_always_32_bytes() -> None:
    """A P-256 coordinate with a leading zero byte (1 key in 128) is still given in 32 bytes: JOSE
    libraries refuse a shorter one (PyJWT: "Coords should be 32 bytes")."""
    found = 0
    for _ in range(2000):
        key = PackageSigningKey(ec.generate_private_key(ec.SECP256R1()), "k")
        numbers = key.private_key.public_key().public_numbers()
        jwk = key.jwk()
        for name, value in (("x", numbers.x), ("y", numbers.y)):
            raw = base64.urlsafe_b64decode(jwk[name] + "=" * (-len(jwk[name]) % 4))
            assert len(raw) == 32 and int.from_bytes(raw, "big") == value
        if numbers.x.bit_length() <= 248 or numbers.y.bit_length() <= 248:
            found += 1
            assert jwt.PyJWK(jwk).key.public_numbers() == numbers
            if found >= 2:
                break
    assert found, "no key with a short coordinate among 2000 (about 1 in 64 has one)"
