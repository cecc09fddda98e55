"""Access tokens: RS256 JWTs issued by the control plane, in the shape of Entra ID's.

Claims: ``aud``, ``iss`` (``<public URL>/<tenant>/v2.0``), ``tid``, ``oid``, ``sub``, ``appid``,
``azp``, ``iat``, ``nbf``, ``exp``, ``ver``; callers add more (``xms_mirid`` for machines).
Anyone can verify them with the OIDC discovery document and the JWKS.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import jwt

from arc_controlplane.auth.keys import SigningKey

# Audiences that mean "the management API": Azure's own, so that unmodified SDKs work.
MANAGEMENT_AUDIENCES = (
    "https://management.azure.com",
    "https://management.azure.com/",
    "https://management.core.windows.net",
    "https://management.core.windows.net/",
)


class InvalidToken(Exception):
    """The token is malformed, expired, not ours, or not for this audience."""


@dataclass(frozen=True)
class IssuedToken:
    token: str
    expires_on: dt.datetime
    claims: dict[str, Any]


@dataclass(frozen=True)
class TokenIssuer:
    key: SigningKey
    public_url: str
    """Base URL of this control plane, as clients reach it (no trailing slash)."""

    def issuer(self, tenant_id: str) -> str:
        return f"{self.public_url}/{tenant_id}/v2.0"

    def management_audiences(self) -> tuple[str, ...]:
        return (*MANAGEMENT_AUDIENCES, self.public_url, self.public_url + "/")

    def issue(
        self,
        *,
        tenant_id: str,
        object_id: str,
        app_id: str,
        audience: str,
        lifetime: dt.timedelta,
        now: dt.datetime,
        extra: dict[str, Any] | None = None,
    ) -> IssuedToken:
        expires = now + lifetime
        claims: dict[str, Any] = {
            "aud": audience,
            "iss": self.issuer(tenant_id),
            "iat": int(now.timestamp()),
            "nbf": int(now.timestamp()) - 300,
            "exp": int(expires.timestamp()),
            "tid": tenant_id,
            "oid": object_id,
            "sub": object_id,
            "appid": app_id,
            "azp": app_id,
            "idtyp": "app",
            "uti": uuid.uuid4().hex,
            "ver": "2.0",
            **(extra or {}),
        }
        token = jwt.encode(claims, self.key.private_key, algorithm="RS256", headers={"kid": self.key.kid})
        return IssuedToken(token, dt.datetime.fromtimestamp(claims["exp"], dt.UTC), claims)

    def verify(self, token: str, audiences: Iterable[str]) -> dict[str, Any]:
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                self.key.private_key.public_key(),
                algorithms=["RS256"],
                audience=list(audiences),
                options={"require": ["exp", "nbf", "iat", "aud", "iss", "tid", "oid"]},
                leeway=30,
            )
        except jwt.PyJWTError as exc:
            raise InvalidToken(str(exc)) from None
        if claims["iss"] != self.issuer(str(claims["tid"])):
            raise InvalidToken("the token was not issued by this control plane")
        return claims
