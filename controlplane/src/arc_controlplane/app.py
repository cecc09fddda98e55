"""The FastAPI application factory."""

from __future__ import annotations

from fastapi import FastAPI

from arc_controlplane import __version__, agentapi
from arc_controlplane.api import arm, health, identity
from arc_controlplane.arm.errors import install_error_handlers
from arc_controlplane.arm.paths import ArmPathMiddleware
from arc_controlplane.audit import AuditMiddleware
from arc_controlplane.context import AppContext
from arc_controlplane.limits import BodyLimitMiddleware


def create_app(ctx: AppContext) -> FastAPI:
    """A new application serving ``ctx``; nothing is created at import time."""
    app = FastAPI(title="hybridops.arc control plane", version=__version__)
    app.state.ctx = ctx
    install_error_handlers(app)
    app.include_router(health.create_router())
    app.include_router(identity.create_router())
    app.include_router(arm.create_router())
    app.include_router(agentapi.create_router())
    app.add_middleware(AuditMiddleware, db=ctx.db, clock=ctx.clock)
    app.add_middleware(BodyLimitMiddleware)
    app.add_middleware(ArmPathMiddleware)
    return app
