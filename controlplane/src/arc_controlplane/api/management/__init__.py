"""ARM-compatible management API (Microsoft.Resources resource groups, Microsoft.HybridCompute).

One module per resource: :mod:`.resource_groups`, :mod:`.machines`, :mod:`.operations`; the
checks every route shares are in :mod:`.access`, the request bodies in :mod:`.models`. Paths
are matched in their canonical spelling (:mod:`arc_controlplane.http.paths`). See
docs/management-api.md.
"""

from __future__ import annotations

from fastapi import APIRouter

from arc_controlplane.api.management import machines, operations, resource_groups


def create_router() -> APIRouter:
    router = APIRouter()
    router.include_router(resource_groups.create_router())
    router.include_router(machines.create_router())
    router.include_router(operations.create_router())
    return router
