"""What every request handler needs, built once per server process and passed down."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, Request

from arc_controlplane.auth.keys import PackageSigningKey
from arc_controlplane.auth.throttle import SignInThrottle
from arc_controlplane.auth.tokens import TokenIssuer
from arc_controlplane.clock import Clock, utcnow
from arc_controlplane.db.engine import Database
from arc_controlplane.db.locks import KeyedLocks
from arc_controlplane.endpoints import Endpoints
from arc_controlplane.machines.notify import Notifier
from arc_controlplane.settings import ServerSettings, gateway_url
from arc_controlplane.timing import Timing


@dataclass(frozen=True)
class AppContext:
    settings: ServerSettings
    db: Database
    tokens: TokenIssuer
    package_key: PackageSigningKey | None = None
    """Signs extension packages; its public part is what agents check them with."""
    clock: Clock = field(default=utcnow)
    notifier: Notifier = field(default_factory=Notifier)
    throttle: SignInThrottle = field(default_factory=SignInThrottle)
    writes: KeyedLocks = field(default_factory=KeyedLocks)
    """Management writes of one resource, one at a time (``db/locks.py``)."""
    """Failed sign-ins at the token endpoint (``auth/throttle.py``)."""
    timing: Timing = field(init=False)
    """The heartbeat interval and the Disconnected threshold (from ``settings``)."""
    endpoints: Endpoints = field(init=False)
    """Where each service is (its own name with ``--endpoint-domain``)."""

    def __post_init__(self) -> None:
        # built once, read on every request (the token issuer and the settings are frozen)
        object.__setattr__(self, "timing", self.settings.timing)
        endpoints = Endpoints(self.tokens.public_url, self.settings.endpoint_domain)
        object.__setattr__(self, "endpoints", endpoints)

    def url_for(self, service: str, request: Request) -> str:
        """Where the client of ``request`` finds ``service`` (``Endpoints.url_for``)."""
        return self.endpoints.url_for(service, request.headers.get("host", ""))

    @property
    def gateway_url(self) -> str | None:
        """Where the Arc gateway service is reached (None when it does not run)."""
        return gateway_url(self.tokens.public_url, self.settings.gateway_port)


def get_context(request: Request) -> AppContext:
    """FastAPI dependency: the application's context."""
    ctx: AppContext = request.app.state.ctx
    return ctx


Ctx = Annotated[AppContext, Depends(get_context)]
"""Route parameter type for the application's context."""
