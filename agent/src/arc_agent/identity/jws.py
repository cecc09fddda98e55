"""Compact JWS (JWT) signing, independent of where the key lives, and the machine assertions.

A ``Signer`` holds a private key and knows its JWS algorithm. The CLI signs with keys loaded
by the ``cryptography`` package (``arc_agent.identity.keys``); himds signs its assertions with
the system's libcrypto (``arc_agent.identity.libcrypto``), which costs it far less memory.
Nothing here imports either.
"""

from __future__ import annotations

import base64
import json
import os
import time
from typing import Any, Protocol

ASSERTION_LIFETIME = 600
"""Seconds; the control plane accepts at most 900 (docs/agent-protocol.md §4)."""


class Signer(Protocol):
    @property
    def algorithm(self) -> str:
        """The JWS ``alg``: RS256, ES256, ..."""
        ...

    def sign(self, data: bytes) -> bytes:
        """The JWS signature of ``data`` (raises ``AzcmError`` SIGNING_FAILED)."""
        ...


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def sign_compact(signer: Signer, header: dict[str, Any], claims: dict[str, Any]) -> str:
    """A compact JWS of ``claims`` with ``header`` (``alg`` and ``typ`` added)."""
    header = {**header, "alg": signer.algorithm, "typ": "JWT"}
    signing_input = (
        f"{b64url(json.dumps(header, separators=(',', ':')).encode())}."
        f"{b64url(json.dumps(claims, separators=(',', ':')).encode())}"
    )
    return f"{signing_input}.{b64url(signer.sign(signing_input.encode('ascii')))}"


class AssertionSigner:
    """Machine assertions (docs/agent-protocol.md §4), reused until 2 minutes before expiry, or
    until the clock has gone back more than a minute since the current one was signed (a clock
    that jumped: the next assertion says what the machine's clock says now, and the control
    plane's answer then names the clock)."""

    def __init__(self, signer: Signer, vm_id: str, audience: str) -> None:
        self.signer = signer
        self.vm_id = vm_id
        self.audience = audience
        self._current = ""
        self._issued = 0.0
        self._expires = 0.0

    def assertion(self, now: float | None = None) -> str:
        moment = time.time() if now is None else now
        if not self._current or self._expires - moment < 120 or moment < self._issued - 60:
            issued = int(moment)
            claims = {
                "iss": self.vm_id,
                "sub": self.vm_id,
                "aud": self.audience,
                "iat": issued,
                "exp": issued + ASSERTION_LIFETIME,
                "jti": os.urandom(16).hex(),
            }
            self._current = sign_compact(self.signer, {"kid": self.vm_id}, claims)
            self._issued = issued
            self._expires = issued + ASSERTION_LIFETIME
        return self._current

    def use(self, signer: Signer) -> None:
        """Sign with ``signer`` from now on (a renewed key)."""
        self.signer = signer
        self._current = ""

    def refresh(self) -> None:
        """Forget the current assertion (after a 401, sign a new one)."""
        self._current = ""
