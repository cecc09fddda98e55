"""Machine assertions: how an agent proves, on every call after registration, that it holds
the private key of the machine it speaks for.

An assertion is a JWS (compact JWT) signed with the machine's key, RS256 for RSA keys and ES256
for P-256 keys, with header ``kid`` = vmId and claims ``iss`` = ``sub`` = vmId,
``aud`` = ``<public URL>/agent``, ``iat``, ``exp`` (at most 15 minutes after ``iat``) and ``jti``.
It is checked against the public key stored at registration, with 60 seconds of leeway for
clocks. Verification sits on the heartbeat path, so it is kept cheap: parsed keys are kept in
a bounded LRU keyed by (vmId, digest of the stored key), so a key rotation makes a new entry,
never a stale hit; and this narrow profile is parsed here directly (strict base64url segments,
JSON, the signature checked by ``cryptography``), which costs a fraction of a general JWT
library's checks.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import re
import threading
import uuid
from collections import OrderedDict
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from fastapi import Request

from arc_controlplane.db.tables import Machine
from arc_controlplane.errors import ArmError
from arc_controlplane.machines.credentials import (
    InvalidPublicKey,
    MachinePublicKey,
    assertion_algorithm,
    load_public_key,
    pem_fingerprint,
)

ASSERTION_MAX_LIFETIME = dt.timedelta(minutes=15)
CLOCK_LEEWAY = dt.timedelta(seconds=60)
AUDIENCE_PATH = "/agent"
"""Assertions are for ``<public URL>/agent``."""
DEFAULT_KEY_CACHE_ENTRIES = 10_000
"""A miss costs one PEM parse (tens of microseconds), so the cache need not hold a whole fleet."""

MAX_ASSERTION_CHARS = 8192
"""An RS256 assertion of an 8192-bit key is under 2,000 characters."""

_REQUIRED_CLAIMS = ("iss", "sub", "aud", "iat", "exp", "jti")
_COMPACT_JWS = re.compile(r"([A-Za-z0-9_-]+)\.([A-Za-z0-9_-]+)\.([A-Za-z0-9_-]+)")
_ES256_SIGNATURE_BYTES = 64
_RECONNECT = "run 'azcmagent disconnect --force-local-only', then 'azcmagent connect' again"


def invalid_assertion(message: str) -> ArmError:
    return ArmError(
        401,
        "InvalidAssertion",
        message,
        headers={"WWW-Authenticate": 'Bearer realm="agent", error="invalid_token"'},
    )


def credential_expired(machine: Machine) -> ArmError:
    expired = machine.credential_not_after
    when = f" on {expired:%Y-%m-%dT%H:%M:%SZ}" if expired is not None else ""
    return ArmError(
        401,
        "CredentialExpired",
        f"The credential of machine '{machine.vm_id}' expired{when}; it cannot be renewed any more. "
        f"The machine must be connected again: {_RECONNECT}.",
        headers={"WWW-Authenticate": 'Bearer realm="agent", error="invalid_token"'},
    )


def canonical_vm_id(value: str) -> str | None:
    """``value`` as a vmId is stored (lower-case GUID), or None when it is not a GUID."""
    try:
        return str(uuid.UUID(value))
    except ValueError:
        return None


def assertion_of(request: Request) -> str:
    """The assertion in ``Authorization: Bearer <assertion>``."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise invalid_assertion(
            "The request carries no machine assertion: send 'Authorization: Bearer <assertion>', a JWT "
            "signed with the machine's key (see docs/agent-protocol.md)."
        )
    return token


class PublicKeyCache:
    """Parsed machine public keys, least recently used first out; thread-safe."""

    def __init__(self, max_entries: int = DEFAULT_KEY_CACHE_ENTRIES) -> None:
        self._max_entries = max_entries
        self._lock = threading.Lock()
        self._keys: OrderedDict[tuple[str, bytes], MachinePublicKey] = OrderedDict()

    def get(self, vm_id: str, pem: str) -> MachinePublicKey:
        """The parsed ``pem`` (raises ``InvalidPublicKey`` if it cannot be parsed)."""
        cache_key = (vm_id, pem_fingerprint(pem))
        with self._lock:
            key = self._keys.get(cache_key)
            if key is not None:
                self._keys.move_to_end(cache_key)
                return key
        key = load_public_key(pem)
        with self._lock:
            self._keys[cache_key] = key
            while len(self._keys) > self._max_entries:
                self._keys.popitem(last=False)
        return key

    def __len__(self) -> int:
        with self._lock:
            return len(self._keys)


class AssertionVerifier:
    def __init__(self, keys: PublicKeyCache) -> None:
        self._keys = keys

    def verify(self, token: str, machine: Machine, audience: str, now: dt.datetime) -> None:
        """Check ``token`` is a valid assertion of ``machine`` now; else 401 (ArmError).

        The credential's expiry is checked last, so only the holder of the key learns of it.
        """
        if not machine.connected or machine.public_key_pem is None:
            raise invalid_assertion(f"Machine '{machine.vm_id}' has not been connected by an agent yet.")
        try:
            key = self._keys.get(machine.vm_id, machine.public_key_pem)
        except InvalidPublicKey:
            raise invalid_assertion(f"The stored key of machine '{machine.vm_id}' is unusable.") from None
        header, claims = decode_assertion(token, key, audience)
        _check_identity(header, claims, machine.vm_id)
        _check_times(claims, now)
        if machine.credential_not_after is not None and machine.credential_not_after <= now:
            raise credential_expired(machine)


def decode_assertion(
    token: str, key: MachinePublicKey, audience: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The header and claims of ``token`` if it is a compact JWS signed by ``key`` for ``audience``.

    Only the assertion profile is accepted: three base64url segments, ``alg`` RS256 for an RSA
    key or ES256 for a P-256 key (so ``none`` and HMAC never pass), no ``crit`` header, the
    required claims present. The signature is checked before the claims are read.
    """
    if len(token) > MAX_ASSERTION_CHARS:
        raise invalid_assertion(f"The assertion is longer than {MAX_ASSERTION_CHARS} characters.")
    match = _COMPACT_JWS.fullmatch(token)
    if match is None:
        raise invalid_assertion("The assertion is not a compact JWS (three base64url parts joined by '.').")
    header = _json_object(match[1], "header")
    algorithm = assertion_algorithm(key)
    if header.get("alg") != algorithm:
        kind = "RSA" if algorithm == "RS256" else "EC P-256"
        raise invalid_assertion(
            f"The assertion must be signed with {algorithm} ('alg'): the machine's registered key is {kind}."
        )
    if "crit" in header:
        raise invalid_assertion("The assertion's header may not have 'crit' extensions.")
    signing_input = f"{match[1]}.{match[2]}".encode("ascii")
    if not _signature_verifies(key, signing_input, _b64decode(match[3])):
        raise invalid_assertion(
            "The assertion's signature does not verify with the machine's registered key."
        )
    claims = _json_object(match[2], "claims")
    missing = [name for name in _REQUIRED_CLAIMS if claims.get(name) is None]
    if missing:
        raise invalid_assertion(f"The assertion has no '{missing[0]}' claim.")
    aud = claims["aud"]
    if not (aud == audience or (isinstance(aud, list) and audience in aud)):
        raise invalid_assertion(f"The assertion's audience ('aud') must be '{audience}'.")
    return header, claims


def _b64decode(segment: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    except binascii.Error:
        raise invalid_assertion("The assertion is not base64url-encoded.") from None


def _json_object(segment: str, part: str) -> dict[str, Any]:
    try:
        value = json.loads(_b64decode(segment))
    except (ValueError, RecursionError):
        raise invalid_assertion(f"The assertion's {part} is not JSON.") from None
    if not isinstance(value, dict):
        raise invalid_assertion(f"The assertion's {part} is not a JSON object.")
    return value


def _signature_verifies(key: MachinePublicKey, signing_input: bytes, signature: bytes) -> bool:
    try:
        if isinstance(key, rsa.RSAPublicKey):
            key.verify(signature, signing_input, padding.PKCS1v15(), hashes.SHA256())
        else:
            if len(signature) != _ES256_SIGNATURE_BYTES:  # JWS: r and s, 32 bytes each (RFC 7518 3.4)
                return False
            r, s = int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
            key.verify(encode_dss_signature(r, s), signing_input, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        return False
    return True


def _check_identity(header: dict[str, Any], claims: dict[str, Any], vm_id: str) -> None:
    for where, name, value in (
        ("header", "kid", header.get("kid")),
        ("claim", "iss", claims["iss"]),
        ("claim", "sub", claims["sub"]),
    ):
        if not isinstance(value, str) or value.lower() != vm_id:
            raise invalid_assertion(f"The assertion's {where} '{name}' must be the machine's vmId '{vm_id}'.")
    jti = claims["jti"]
    if not isinstance(jti, str) or not 1 <= len(jti) <= 128:
        raise invalid_assertion("The assertion's claim 'jti' must be a string of 1 to 128 characters.")


def _seconds(claims: dict[str, Any], name: str) -> float:
    value = claims[name]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise invalid_assertion(f"The assertion's claim '{name}' must be a number of seconds since 1970.")
    return float(value)


def _check_times(claims: dict[str, Any], now: dt.datetime) -> None:
    issued, expires = _seconds(claims, "iat"), _seconds(claims, "exp")
    moment, leeway = now.timestamp(), CLOCK_LEEWAY.total_seconds()
    if expires <= issued:
        raise invalid_assertion("The assertion expires ('exp') before it was issued ('iat').")
    if expires - issued > ASSERTION_MAX_LIFETIME.total_seconds():
        raise invalid_assertion(
            f"The assertion lives longer than {int(ASSERTION_MAX_LIFETIME.total_seconds() // 60)} minutes "
            "('exp' - 'iat'); make a new one for each call or a few minutes' worth of calls."
        )
    if issued > moment + leeway:
        raise invalid_assertion("The assertion was issued in the future ('iat'): check the machine's clock.")
    if "nbf" in claims and _seconds(claims, "nbf") > moment + leeway:
        raise invalid_assertion("The assertion is not valid yet ('nbf'): check the machine's clock.")
    if expires < moment - leeway:
        raise invalid_assertion(
            "The assertion has expired ('exp'); sign a new one. If it was made just now, the machine's "
            "clock is behind: check the machine's clock."
        )


def unknown_machine(vm_id: str) -> ArmError:
    return invalid_assertion(
        f"No machine with vmId '{vm_id}' is registered here (it was never connected, or was deleted)."
    )
