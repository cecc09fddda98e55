"""The FastAPI application factory."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.telemetry import TelemetryConfig
from starlette.types import ASGIApp

from arc_controlplane import __version__, agentapi
from arc_controlplane.agentapi.fastpath import HeartbeatFastPath
from arc_controlplane.agentapi.heartbeat import Heartbeats
from arc_controlplane.agentapi.services import AgentServices
from arc_controlplane.api import arm, health, identity
from arc_controlplane.arm.errors import install_error_handlers
from arc_controlplane.arm.paths import ArmPathMiddleware
from arc_controlplane.audit import AuditMiddleware, AuditWriter
from arc_controlplane.context import AppContext
from arc_controlplane.guard import ErrorGuard
from arc_controlplane.limits import MAX_BODY_BYTES, BodyLimitMiddleware

NO_TELEMETRY: TelemetryConfig = {
    "tracing": False,
    "metrics": False,
    "logs": False,
    "operation_spans": False,
}
"""FastAPI's OpenTelemetry instrumentation, off: nothing here exports it, and its checks cost
a tenth of a heartbeat's time on every request."""


def create_app(ctx: AppContext) -> ASGIApp:
    """A new application serving ``ctx``, inside :class:`ErrorGuard`; nothing is created at
    import time."""
    agent_services = AgentServices.create(ctx)
    heartbeats = Heartbeats(agent_services)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        try:
            yield
        finally:
            agent_services.close()

    app = FastAPI(
        title="hybridops.arc control plane",
        version=__version__,
        lifespan=lifespan,
        telemetry=NO_TELEMETRY,
    )
    app.state.ctx = ctx
    install_error_handlers(app)
    app.include_router(health.create_router())
    app.include_router(identity.create_router())
    app.include_router(arm.create_router())
    app.include_router(agentapi.create_router(agent_services, heartbeats))
    audit_writer = AuditWriter(ctx.db, ctx.clock, ctx.settings.audit_retention)
    app.add_middleware(AuditMiddleware, writer=audit_writer, clock=ctx.clock)
    app.add_middleware(BodyLimitMiddleware)
    app.add_middleware(ArmPathMiddleware)
    app.add_middleware(HeartbeatFastPath, heartbeats=heartbeats, limit=MAX_BODY_BYTES)  # outermost of ours
    return ErrorGuard(app)
