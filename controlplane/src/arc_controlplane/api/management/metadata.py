"""ARM's cloud metadata: ``GET /metadata/endpoints?api-version=...``, answered without a token.

Clients point at a cloud by its Resource Manager URL alone and learn the rest from here: where
to sign in (``authentication.loginEndpoint``, the token service of this control plane), which
audience to ask a token for (``audiences[0]``), and where Resource Manager is. The shape depends
on the api-version, as Azure's does (docs/reference/arm.md, "Cloud metadata"):

- ``2015-01-01`` (``msrestazure``, Azure Stack tools): one object with ``authentication`` and
  ``graphEndpoint`` (``galleryEndpoint`` and ``portalEndpoint`` are read with defaults), signing in
  at the AD FS authority (see :func:`legacy`);
- ``2017-12-01`` through ``2020-06-01``: a *list* of clouds (here, one);
- ``2022-09-01`` and later (the Azure CLI's ``az cloud register``): one cloud object.

Endpoints of services this control plane does not run (graph, portal, gallery, storage...) are
left out; the clients fall back to their defaults for those. ``suffixes`` is always there
(possibly empty): the Azure CLI reads it unguarded.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from arc_controlplane.auth.discovery import ADFS_TENANT
from arc_controlplane.http.context import Ctx
from arc_controlplane.http.responses import JsonResponse
from arc_controlplane.http.versions import ApiVersionParameter, ApiVersions

CLOUD_NAME = "HybridOpsArc"
"""The name this cloud has in the metadata (clients that register it may give their own)."""

LEGACY_VERSION = "2015-01-01"
LIST_VERSIONS = ("2017-12-01", "2018-01-01", "2019-05-01", "2020-06-01")
OBJECT_VERSIONS = ("2022-09-01",)
METADATA = ApiVersions("Microsoft.Resources", (LEGACY_VERSION, *LIST_VERSIONS, *OBJECT_VERSIONS))
METADATA_PATH = "/metadata/endpoints"


def cloud(public_url: str) -> dict[str, Any]:
    """This control plane as one cloud, in the 2022-09-01 shape."""
    root = public_url.rstrip("/") + "/"
    return {
        "name": CLOUD_NAME,
        "resourceManager": root,
        "authentication": {
            "loginEndpoint": root,
            "audiences": [root],
            "tenant": "common",
            "identityProvider": "AAD",
        },
        "suffixes": {},
    }


def legacy(public_url: str) -> dict[str, Any]:
    """The 2015-01-01 shape (Azure Stack's): no name, no resourceManager.

    Its readers (``msrestazure``, hence ``azure.azcollection`` 1.x) sign in with ADAL, which
    checks every authority with Microsoft's cloud except an AD FS one; so the sign-in endpoint
    here is the control plane's AD FS authority, ``<root>adfs/``, as Azure Stack Hub with AD FS
    announces its own. ``graphEndpoint`` is required by those readers: there is no graph here,
    it names the control plane (a graph request gets the management API's 404).
    """
    root = public_url.rstrip("/") + "/"
    return {
        "graphEndpoint": root,
        "authentication": {"loginEndpoint": f"{root}{ADFS_TENANT}/", "audiences": [root]},
    }


def metadata_body(public_url: str, version: str) -> dict[str, Any] | list[dict[str, Any]]:
    """The document for an accepted ``version`` (pure: the route below only adds I/O)."""
    if version == LEGACY_VERSION:
        return legacy(public_url)
    if version in LIST_VERSIONS:
        return [cloud(public_url)]
    return cloud(public_url)


def get_metadata(ctx: Ctx, api_version: ApiVersionParameter = None) -> JsonResponse:
    """The cloud's endpoints; no token needed (clients read it before they can sign in)."""
    version = METADATA.check(api_version)
    return JsonResponse(metadata_body(ctx.tokens.public_url, version))


def create_router() -> APIRouter:
    router = APIRouter(tags=["metadata"])
    router.add_api_route(METADATA_PATH, get_metadata, methods=["GET"], response_model=None)
    return router
