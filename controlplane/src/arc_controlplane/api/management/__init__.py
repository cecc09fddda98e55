"""ARM-compatible management API (Microsoft.Resources, Microsoft.HybridCompute) and ARM's cloud
metadata.

One module per resource: :mod:`.metadata`, :mod:`.subscriptions`, :mod:`.providers`,
:mod:`.resource_groups`, :mod:`.resources`, :mod:`.machines`, :mod:`.extensions`,
:mod:`.guest_configuration`, :mod:`.gateways`, :mod:`.operations`; the
checks every route shares are in :mod:`.access`, the request bodies in :mod:`.schema`. Paths
are matched in their canonical spelling (:mod:`arc_controlplane.http.paths`). See
docs/management-api.md.
"""

from __future__ import annotations

from fastapi import APIRouter

from arc_controlplane.api.management import (
    extension_metadata,
    extensions,
    gateways,
    guest_configuration,
    machines,
    metadata,
    operations,
    providers,
    resource_groups,
    resources,
    subscriptions,
)


def create_router() -> APIRouter:
    router = APIRouter()
    router.include_router(metadata.create_router())
    router.include_router(subscriptions.create_router())
    router.include_router(providers.create_router())
    router.include_router(resources.create_router())
    router.include_router(resource_groups.create_router())
    router.include_router(machines.create_router())
    router.include_router(extensions.create_router())
    router.include_router(extension_metadata.create_router())
    router.include_router(guest_configuration.create_router())
    router.include_router(gateways.create_router())
    router.include_router(operations.create_router())
    router.include_router(providers.create_unserved_router())  # last: what no route above serves
    return router
