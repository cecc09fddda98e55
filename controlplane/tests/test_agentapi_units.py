"""Agent API pure logic: public keys and certificates, assertion checks at their boundaries,
the key cache, token audiences, the reported-property whitelist."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
import uuid
from pathlib import Path
from typing import Any

import jwt
import pytest
from agent_client import new_key, public_pem
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import NameOID
from pydantic.alias_generators import to_camel

from arc_controlplane.api.agent.assertions import AssertionVerifier, PublicKeyCache
from arc_controlplane.api.agent.schema import MachineReport
from arc_controlplane.api.agent.tokens import token_audience
from arc_controlplane.db.tables import Machine
from arc_controlplane.errors import ArmError
from arc_controlplane.machines.credentials import (
    InvalidPublicKey,
    issue_credential,
    load_public_key,
    public_key_pem,
)
from arc_controlplane.machines.notify import Notifier
from arc_controlplane.machines.registration import REPORTED_PROPERTIES
from arc_controlplane.pki import ensure_ca

NOW = dt.datetime(2026, 3, 1, 12, 0, 0, tzinfo=dt.UTC)
AUDIENCE = "https://cp.example:8443/agent"


def test_the_report_model_accepts_exactly_the_whitelisted_properties() -> None:
    assert {to_camel(name) for name in MachineReport.model_fields} == REPORTED_PROPERTIES


def test_changes_keep_explicit_nulls_and_drop_unset_keys() -> None:
    report = MachineReport.model_validate({"osVersion": "12", "machineFqdn": None})
    assert report.arm_changes() == {"osVersion": "12", "machineFqdn": None}
    assert report.arm_properties() == {"osVersion": "12"}


# --- public keys and credentials ---------------------------------------------------------------


def test_rsa_2048_and_p256_keys_are_accepted_and_stored_canonically() -> None:
    for key in (new_key("rsa"), new_key("ec")):
        pem = public_pem(key)
        loaded = load_public_key(pem.replace("\n", "\r\n"))
        assert public_key_pem(loaded) == pem


@pytest.mark.parametrize(
    ("key", "message"),
    [
        (rsa.generate_private_key(public_exponent=65537, key_size=1024), "1024 bits"),
        (ec.generate_private_key(ec.SECP384R1()), "secp384r1"),
        (ed25519.Ed25519PrivateKey.generate(), "neither RSA nor EC"),
    ],
)
def test_weak_or_unsupported_keys_are_refused(key: Any, message: str) -> None:
    with pytest.raises(InvalidPublicKey, match=message):
        load_public_key(public_pem(key))


@pytest.mark.parametrize(
    "text", ["", "garbage", "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----", "é"]
)
def test_non_keys_are_refused(text: str) -> None:
    with pytest.raises(InvalidPublicKey, match="not a PEM"):
        load_public_key(text)


def test_overlong_pem_is_refused_before_parsing() -> None:
    with pytest.raises(InvalidPublicKey, match="longer than"):
        load_public_key("A" * 5000)


def test_credentials_are_90_day_client_certificates_for_the_vm_id(tmp_path: Path) -> None:
    ca = ensure_ca(tmp_path / "pki", NOW)
    key = new_key("ec")
    vm_id = str(uuid.uuid4())
    credential = issue_credential(
        ca, load_public_key(public_pem(key)), vm_id, NOW + dt.timedelta(microseconds=7)
    )
    certificate = x509.load_pem_x509_certificate(credential.certificate_pem.encode())
    certificate.verify_directly_issued_by(ca.certificate)
    assert certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == vm_id
    assert certificate.not_valid_after_utc == NOW + dt.timedelta(days=90) == credential.not_after
    assert certificate.not_valid_before_utc == NOW - dt.timedelta(minutes=5)
    constraints = certificate.extensions.get_extension_for_class(x509.BasicConstraints).value
    assert constraints.ca is False


def test_credentials_never_outlive_the_ca(tmp_path: Path) -> None:
    ca = ensure_ca(tmp_path / "pki", NOW)
    late = NOW + dt.timedelta(days=3650 - 10)
    credential = issue_credential(ca, load_public_key(public_pem(new_key())), str(uuid.uuid4()), late)
    assert credential.not_after <= ca.certificate.not_valid_after_utc


# --- the key cache -----------------------------------------------------------------------------


def test_the_key_cache_is_bounded_and_keyed_by_the_stored_key() -> None:
    cache = PublicKeyCache(max_entries=2)
    pems = [public_pem(new_key()) for _ in range(3)]
    first = cache.get("vm-1", pems[0])
    assert cache.get("vm-1", pems[0]) is first
    rotated = cache.get("vm-1", pems[1])
    assert rotated is not first
    cache.get("vm-1", pems[0])  # most recently used now
    cache.get("vm-2", pems[2])  # evicts (vm-1, pems[1])
    assert len(cache) == 2
    assert cache.get("vm-1", pems[0]) is first
    assert cache.get("vm-1", pems[1]) is not rotated


# --- assertions --------------------------------------------------------------------------------


def machine_with(key: Any, **fields: Any) -> Machine:
    values: dict[str, Any] = {
        "vm_id": str(uuid.uuid4()),
        "name": "h1",
        "connected": True,
        "public_key_pem": public_pem(key),
        "credential_not_after": NOW + dt.timedelta(days=60),
    }
    values.update(fields)
    return Machine(**values)


def assertion(key: Any, machine: Machine, issued: dt.datetime, lifetime: dt.timedelta, **claims: Any) -> str:
    body = {
        "iss": machine.vm_id,
        "sub": machine.vm_id,
        "aud": AUDIENCE,
        "iat": int(issued.timestamp()),
        "exp": int((issued + lifetime).timestamp()),
        "jti": "1",
        **claims,
    }
    algorithm = "RS256" if isinstance(key, rsa.RSAPrivateKey) else "ES256"
    return jwt.encode(body, key, algorithm=algorithm, headers={"kid": machine.vm_id.upper()})


def verify(token: str, machine: Machine, now: dt.datetime = NOW) -> None:
    AssertionVerifier(PublicKeyCache()).verify(token, machine, AUDIENCE, now)


def refusal(token: str, machine: Machine, now: dt.datetime = NOW) -> ArmError:
    with pytest.raises(ArmError) as info:
        verify(token, machine, now)
    assert info.value.status == 401
    return info.value


MINUTE = dt.timedelta(minutes=1)


@pytest.mark.parametrize("kind", ["rsa", "ec"])
def test_a_good_assertion_passes_for_both_key_kinds(kind: str) -> None:
    key = new_key(kind)
    machine = machine_with(key)
    verify(assertion(key, machine, NOW, 5 * MINUTE), machine)


def test_lifetime_is_at_most_fifteen_minutes() -> None:
    key = new_key()
    machine = machine_with(key)
    verify(assertion(key, machine, NOW, 15 * MINUTE), machine)
    error = refusal(assertion(key, machine, NOW, 15 * MINUTE + dt.timedelta(seconds=1)), machine)
    assert "longer than 15 minutes" in error.message


def test_clocks_may_differ_by_sixty_seconds() -> None:
    key = new_key()
    machine = machine_with(key)
    ahead = NOW + dt.timedelta(seconds=60)
    verify(assertion(key, machine, ahead, 5 * MINUTE), machine)
    assert (
        "future"
        in refusal(assertion(key, machine, ahead + dt.timedelta(seconds=1), 5 * MINUTE), machine).message
    )
    expired_at = NOW - dt.timedelta(seconds=60)
    verify(assertion(key, machine, expired_at - 5 * MINUTE, 5 * MINUTE), machine)
    late = assertion(key, machine, expired_at - 5 * MINUTE - dt.timedelta(seconds=1), 5 * MINUTE)
    assert "expired" in refusal(late, machine).message


@pytest.mark.parametrize(
    ("claims", "message"),
    [
        ({"iat": "now"}, "'iat' must be a number"),
        ({"exp": True}, "'exp' must be a number"),
        ({"nbf": int((NOW + 2 * MINUTE).timestamp())}, "not valid yet"),
        ({"sub": "someone"}, "'sub' must be the machine's vmId"),
        ({"jti": ""}, "'jti'"),
        ({"aud": [AUDIENCE + "x"]}, "audience"),
    ],
)
def test_malformed_claims_are_refused(claims: dict[str, Any], message: str) -> None:
    key = new_key()
    machine = machine_with(key)
    assert message in refusal(assertion(key, machine, NOW, 5 * MINUTE, **claims), machine).message


def test_an_expired_credential_is_its_own_error_after_the_signature_check() -> None:
    key = new_key()
    machine = machine_with(key, credential_not_after=NOW)
    error = refusal(assertion(key, machine, NOW, 5 * MINUTE), machine)
    assert error.code == "CredentialExpired"
    assert "azcmagent connect" in error.message
    assert refusal(assertion(new_key(), machine, NOW, 5 * MINUTE), machine).code == "InvalidAssertion"


def test_a_machine_awaiting_connection_has_no_key_to_check() -> None:
    machine = machine_with(new_key(), connected=False, public_key_pem=None)
    assert refusal("a.b.c", machine).code == "InvalidAssertion"


# --- token audiences ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("resource", "audience"),
    [
        ("https://vault.azure.net", "https://vault.azure.net"),
        (" https://management.azure.com/ ", "https://management.azure.com/"),
        ("https://management.azure.com//.default", "https://management.azure.com/"),
        ("api://11111111-2222-3333-4444-555555555555/.default", "api://11111111-2222-3333-4444-555555555555"),
    ],
)
def test_token_audiences(resource: str, audience: str) -> None:
    assert token_audience(resource) == audience


@pytest.mark.parametrize(
    "resource",
    ["/.default", "https://[::1", "https://user@host", "https://h/#x", "https://h\x00", "mailto:x"],
)
def test_unusable_token_audiences(resource: str) -> None:
    with pytest.raises(ArmError) as info:
        token_audience(resource)
    assert (info.value.status, info.value.code) == (400, "InvalidResource")


# --- the notifier at shutdown ------------------------------------------------------------------


def test_closing_the_notifier_wakes_waiters_and_ends_later_waits_at_once() -> None:
    async def scenario() -> tuple[bool, bool, float, int]:
        notifier = Notifier()
        waiting = asyncio.create_task(notifier.wait("vm-1", 30))
        await asyncio.sleep(0.05)
        notifier.close()
        woken = await asyncio.wait_for(waiting, 2)
        started = time.monotonic()
        later = await notifier.wait("vm-2", 30)
        return woken, later, time.monotonic() - started, notifier.waiting()

    woken, later, elapsed, left = asyncio.run(scenario())
    assert (woken, later, left) == (True, True, 0)
    assert elapsed < 0.5
