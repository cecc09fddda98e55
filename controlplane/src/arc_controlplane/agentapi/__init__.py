"""The agent-facing API (ours; see docs/agent-protocol.md)."""

from __future__ import annotations

from fastapi import APIRouter


def create_router() -> APIRouter:
    return APIRouter()
