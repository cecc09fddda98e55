"""The FastAPI application factory."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.telemetry import TelemetryConfig
from starlette.types import ASGIApp

from arc_controlplane import __version__
from arc_controlplane.api import agent, downloads, health, management, tokens
from arc_controlplane.api.agent.fastpath import HeartbeatFastPath
from arc_controlplane.api.agent.heartbeat import Heartbeats
from arc_controlplane.api.agent.services import AgentServices
from arc_controlplane.http.audit import AuditMiddleware, AuditWriter
from arc_controlplane.http.context import AppContext
from arc_controlplane.http.endpoint_names import EndpointNameMiddleware
from arc_controlplane.http.errors import install_error_handlers
from arc_controlplane.http.guard import ErrorGuard
from arc_controlplane.http.limits import MAX_BODY_BYTES, BodyLimitMiddleware
from arc_controlplane.http.paths import ArmPathMiddleware

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
    app.include_router(tokens.create_router())
    app.include_router(management.create_router())
    app.include_router(agent.create_router(agent_services, heartbeats))
    app.include_router(downloads.create_router())
    audit_writer = AuditWriter(ctx.db, ctx.clock, ctx.settings.audit_retention)
    app.add_middleware(AuditMiddleware, writer=audit_writer, clock=ctx.clock)
    app.add_middleware(BodyLimitMiddleware)
    app.add_middleware(ArmPathMiddleware)
    app.add_middleware(HeartbeatFastPath, heartbeats=heartbeats, limit=MAX_BODY_BYTES)
    app.add_middleware(EndpointNameMiddleware, endpoints=ctx.endpoints)  # outermost of ours
    return ErrorGuard(app)
