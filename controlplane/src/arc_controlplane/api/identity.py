"""Entra-style token service, OIDC discovery document and JWKS."""

from __future__ import annotations

from fastapi import APIRouter


def create_router() -> APIRouter:
    return APIRouter()
