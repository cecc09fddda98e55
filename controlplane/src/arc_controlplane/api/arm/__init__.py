"""ARM-compatible management API (Microsoft.Resources resource groups, Microsoft.HybridCompute)."""

from __future__ import annotations

from fastapi import APIRouter


def create_router() -> APIRouter:
    return APIRouter()
