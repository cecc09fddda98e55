"""The FastAPI application factory."""

from __future__ import annotations

from fastapi import FastAPI

from arc_controlplane import __version__
from arc_controlplane.api import health
from arc_controlplane.settings import ServerSettings


def create_app(settings: ServerSettings) -> FastAPI:
    """A new application for ``settings``; nothing is created at import time."""
    app = FastAPI(title="hybridops.arc control plane", version=__version__)
    app.state.settings = settings
    app.include_router(health.create_router())
    return app
