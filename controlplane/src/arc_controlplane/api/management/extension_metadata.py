"""Extension metadata: the published versions of an extension type (ExtensionMetadata_List/Get,
and the V2 routes at tenant scope with the package and signature URLs), from the catalogue
(``machines/catalog.py``; docs/reference/extensions.md)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request

from arc_controlplane.api.management.access import Access, SubscriptionChecks, SubscriptionRef
from arc_controlplane.db.tables import ExtensionPackage
from arc_controlplane.errors import ArmError
from arc_controlplane.http.caller import authenticate
from arc_controlplane.http.context import Ctx
from arc_controlplane.http.locations import check_location
from arc_controlplane.http.responses import JsonResponse
from arc_controlplane.http.versions import HYBRID_COMPUTE, ApiVersionParameter
from arc_controlplane.machines import catalog
from arc_controlplane.resource_ids import PROVIDER

VERSIONS = "/locations/{location}/publishers/{publisher}/extensionTypes/{extension_type}/versions"
SUBSCRIPTION_VERSIONS = f"/subscriptions/{{subscription_id}}/providers/{PROVIDER}" + VERSIONS
TENANT_VERSIONS = f"/providers/{PROVIDER}" + VERSIONS
VERSION_TYPE = f"{PROVIDER}/locations/publishers/extensionTypes/versions"

SubscriptionAccess = Annotated[Access[SubscriptionRef], Depends(SubscriptionChecks(HYBRID_COMPUTE, None))]


def _value(scope: str, location: str, package: ExtensionPackage, public_url: str, v2: bool) -> dict[str, Any]:
    properties: dict[str, Any] = {
        "version": package.version,
        "extensionType": package.type,
        "publisher": package.publisher,
    }
    if v2:
        uri = catalog.package_uri(public_url, package)
        properties.update(
            extensionUris=[uri],
            extensionSignatureUri=uri + "/signature",
            operatingSystem="Linux",
            architecture=["amd64"],
        )
    return {
        "id": f"{scope}/providers/{PROVIDER}/locations/{location}/publishers/{package.publisher}"
        f"/extensionTypes/{package.type}/versions/{package.version}",
        "name": package.version,
        "type": VERSION_TYPE,
        "properties": properties,
    }


def _published(ctx: Ctx, publisher: str, extension_type: str) -> list[ExtensionPackage]:
    with ctx.db.session() as session:
        packages = catalog.versions_of(session, publisher, extension_type)
        for package in packages:
            session.expunge(package)
    return packages


def _one(
    packages: list[ExtensionPackage], publisher: str, extension_type: str, version: str
) -> ExtensionPackage:
    for package in packages:
        if package.version == version:
            return package
    raise ArmError(
        404,
        "ResourceNotFound",
        f"Extension {publisher}.{extension_type} has no published version {version[:64]}.",
    )


def list_versions(
    granted: SubscriptionAccess, location: str, publisher: str, extension_type: str, ctx: Ctx
) -> JsonResponse:
    """ExtensionMetadata_List: the published versions, oldest first."""
    where = check_location(location)
    scope = granted.ref.id
    packages = _published(ctx, publisher, extension_type)
    return JsonResponse({"value": [_value(scope, where, p, ctx.tokens.public_url, False) for p in packages]})


def get_version(
    granted: SubscriptionAccess, location: str, publisher: str, extension_type: str, version: str, ctx: Ctx
) -> JsonResponse:
    """ExtensionMetadata_Get."""
    where = check_location(location)
    package = _one(_published(ctx, publisher, extension_type), publisher, extension_type, version)
    return JsonResponse(_value(granted.ref.id, where, package, ctx.tokens.public_url, False))


def list_versions_v2(
    request: Request, location: str, publisher: str, extension_type: str, ctx: Ctx,
    api_version: ApiVersionParameter = None,
) -> JsonResponse:  # fmt: skip
    """ExtensionMetadataV2_List: with the package and signature URLs."""
    authenticate(request, ctx)
    HYBRID_COMPUTE.check(api_version)
    where = check_location(location)
    packages = _published(ctx, publisher, extension_type)
    return JsonResponse({"value": [_value("", where, p, ctx.tokens.public_url, True) for p in packages]})


def get_version_v2(
    request: Request, location: str, publisher: str, extension_type: str, version: str, ctx: Ctx,
    api_version: ApiVersionParameter = None,
) -> JsonResponse:  # fmt: skip
    """ExtensionMetadataV2_Get."""
    authenticate(request, ctx)
    HYBRID_COMPUTE.check(api_version)
    where = check_location(location)
    package = _one(_published(ctx, publisher, extension_type), publisher, extension_type, version)
    return JsonResponse(_value("", where, package, ctx.tokens.public_url, True))


def create_router() -> APIRouter:
    router = APIRouter(tags=["extension metadata"])
    router.add_api_route(SUBSCRIPTION_VERSIONS, list_versions, methods=["GET"], response_model=None)
    router.add_api_route(
        SUBSCRIPTION_VERSIONS + "/{version}", get_version, methods=["GET"], response_model=None
    )
    router.add_api_route(TENANT_VERSIONS, list_versions_v2, methods=["GET"], response_model=None)
    router.add_api_route(TENANT_VERSIONS + "/{version}", get_version_v2, methods=["GET"], response_model=None)
    return router
