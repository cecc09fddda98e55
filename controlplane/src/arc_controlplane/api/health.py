"""``GET /healthz``: liveness of the control plane, for probes and start-up waits."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter
from pydantic import BaseModel

from arc_controlplane import __version__


class Health(BaseModel):
    status: Literal["ok"]
    version: str


def healthz() -> Health:
    """The process is up and serves requests."""
    return Health(status="ok", version=__version__)


def create_router() -> APIRouter:
    router = APIRouter(tags=["health"])
    router.add_api_route("/healthz", healthz, methods=["GET"], response_model=Health)
    return router
