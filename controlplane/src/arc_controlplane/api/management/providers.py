"""Resource providers (Microsoft.Resources ``providers``): which resource types this control plane
serves and the api-versions each accepts.

Generic clients ask here before they touch a resource they know only by id: ``az resource
show --ids ID`` reads ``GET /subscriptions/{id}/providers/{namespace}``, finds the resource type
and takes the first stable entry of its ``apiVersions`` (newest first, as Azure lists them).

- ``GET /subscriptions/{id}/providers`` and ``GET /subscriptions/{id}/providers/{namespace}``:
  for a caller with any role assignment in the subscription (as Azure lets any of them read its
  providers);
- ``GET /providers`` and ``GET /providers/{namespace}``: the same at tenant level, for any
  signed-in caller;
- ``POST .../providers/{namespace}/register``: answers the provider, always ``Registered`` (the
  providers here are built in; Terraform and ``az provider register`` call it).

An unknown namespace is 404 ``InvalidResourceNamespace``, as Azure answers it.

A request for a resource under ``/providers/`` that no route serves gets Azure's answer, not a
bare 404 (:func:`unserved_resource`, registered after every other management route): 400
``InvalidResourceNamespace`` for a namespace this control plane does not serve (``az resource
show --ids`` of a ``Microsoft.Compute`` id), 400 ``InvalidResourceType`` for a type its
namespace does not have, 405 ``MethodNotAllowed`` for a served type asked with another method.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from sqlalchemy import select

from arc_controlplane.api.management.access import Access, SubscriptionChecks, SubscriptionRef
from arc_controlplane.db.tables import ResourceGroup
from arc_controlplane.errors import ArmError
from arc_controlplane.http.caller import authenticate
from arc_controlplane.http.context import Ctx
from arc_controlplane.http.responses import JsonResponse
from arc_controlplane.http.versions import (
    GUEST_CONFIGURATION,
    HYBRID_COMPUTE,
    RESOURCES,
    SUBSCRIPTIONS,
    ApiVersionParameter,
    ApiVersions,
)
from arc_controlplane.resource_ids import subscription_scope


@dataclass(frozen=True)
class ResourceType:
    name: str
    """As Azure spells it, child types with their parents (``locations/operationStatus``)."""
    versions: ApiVersions
    located: bool = True
    """Whether its resources have a location (global types list none)."""


PROVIDERS: dict[str, tuple[ResourceType, ...]] = {
    "Microsoft.HybridCompute": (
        ResourceType("machines", HYBRID_COMPUTE),
        ResourceType("machines/extensions", HYBRID_COMPUTE),
        ResourceType("gateways", HYBRID_COMPUTE),
        ResourceType("settings", HYBRID_COMPUTE, located=False),
        ResourceType("locations", HYBRID_COMPUTE, located=False),
        ResourceType("locations/publishers/extensionTypes/versions", HYBRID_COMPUTE, located=False),
        ResourceType("locations/operationStatus", HYBRID_COMPUTE),
        ResourceType("locations/operationResults", HYBRID_COMPUTE),
    ),
    "Microsoft.GuestConfiguration": (
        ResourceType("guestConfigurationAssignments", GUEST_CONFIGURATION),
        ResourceType("guestConfigurationAssignments/reports", GUEST_CONFIGURATION, located=False),
    ),
    "Microsoft.Resources": (
        ResourceType("resourceGroups", RESOURCES),
        ResourceType("subscriptions", SUBSCRIPTIONS, located=False),
        ResourceType("tenants", SUBSCRIPTIONS, located=False),
        ResourceType("providers", RESOURCES, located=False),
        ResourceType("resources", RESOURCES, located=False),
        ResourceType("subscriptions/resources", RESOURCES, located=False),
        ResourceType("subscriptions/resourceGroups", RESOURCES, located=False),
        ResourceType("subscriptions/providers", RESOURCES, located=False),
    ),
}
"""The resource types this control plane serves, by provider namespace."""

_BY_LOWER = {namespace.lower(): namespace for namespace in PROVIDERS}
PROVIDERS_READ = "Microsoft.Resources/subscriptions/providers/read"

SubscriptionProviders = Annotated[Access[SubscriptionRef], Depends(SubscriptionChecks(RESOURCES, None))]


def find_namespace(namespace: str) -> str:
    """The canonical spelling of ``namespace``; ARM's 404 ``InvalidResourceNamespace`` if unknown."""
    found = find_namespace_or_none(namespace)
    if found is None:
        shown = namespace if len(namespace) <= 64 else namespace[:64] + "..."
        raise ArmError(
            404,
            "InvalidResourceNamespace",
            f"The resource namespace '{shown}' is invalid. This control plane serves "
            f"{', '.join(sorted(PROVIDERS))}.",
        )
    return found


def resource_type_versions(full_type: str) -> ApiVersions | None:
    """The api-versions of ``Namespace/type[/child]`` (any case), None if not served here."""
    namespace, _, type_name = full_type.partition("/")
    for resource_type in PROVIDERS.get(_BY_LOWER.get(namespace.lower(), ""), ()):
        if resource_type.name.lower() == type_name.lower():
            return resource_type.versions
    return None


def provider_view(namespace: str, subscription_id: str | None, locations: list[str]) -> dict[str, Any]:
    """A provider in the shape of Providers_Get (2024-11-01); ``apiVersions`` newest first."""
    prefix = "" if subscription_id is None else subscription_scope(subscription_id)
    view: dict[str, Any] = {"id": f"{prefix}/providers/{namespace}", "namespace": namespace}
    if subscription_id is not None:
        view["registrationState"] = "Registered"
        view["registrationPolicy"] = "RegistrationRequired"
    view["resourceTypes"] = [
        {
            "resourceType": resource_type.name,
            "locations": locations if resource_type.located else [],
            "apiVersions": sorted(resource_type.versions.supported, reverse=True),
            "defaultApiVersion": _default_version(resource_type.versions),
            "capabilities": "None",
        }
        for resource_type in PROVIDERS[namespace]
    ]
    return view


def _default_version(versions: ApiVersions) -> str:
    return max(v for v in versions.supported if not v.endswith("-preview"))


def _locations(ctx: Ctx, subscription_id: str) -> list[str]:
    """Where the subscription has resource groups (any location is accepted; these are in use)."""
    with ctx.db.session() as session:
        found = session.scalars(
            select(ResourceGroup.location).where(ResourceGroup.subscription_id == subscription_id).distinct()
        ).all()
    return sorted(set(found))


def list_subscription_providers(granted: SubscriptionProviders, ctx: Ctx) -> JsonResponse:
    """Providers_List."""
    granted.caller.require_presence(PROVIDERS_READ, granted.ref.id)
    locations = _locations(ctx, granted.subscription.id)
    value = [
        provider_view(namespace, granted.ref.subscription_id, locations) for namespace in sorted(PROVIDERS)
    ]
    return JsonResponse({"value": value})


def get_subscription_provider(granted: SubscriptionProviders, namespace: str, ctx: Ctx) -> JsonResponse:
    """Providers_Get."""
    granted.caller.require_presence(PROVIDERS_READ, granted.ref.id)
    found = find_namespace(namespace)
    return JsonResponse(
        provider_view(found, granted.ref.subscription_id, _locations(ctx, granted.subscription.id))
    )


def register_provider(granted: SubscriptionProviders, namespace: str, ctx: Ctx) -> JsonResponse:
    """Providers_Register: the providers here are always registered."""
    return get_subscription_provider(granted, namespace, ctx)


def list_tenant_providers(
    request: Request, ctx: Ctx, api_version: ApiVersionParameter = None
) -> JsonResponse:
    """Providers_ListAtTenantScope."""
    authenticate(request, ctx)
    RESOURCES.check(api_version)
    return JsonResponse({"value": [provider_view(namespace, None, []) for namespace in sorted(PROVIDERS)]})


def get_tenant_provider(
    request: Request, namespace: str, ctx: Ctx, api_version: ApiVersionParameter = None
) -> JsonResponse:
    """Providers_GetAtTenantScope."""
    authenticate(request, ctx)
    RESOURCES.check(api_version)
    return JsonResponse(provider_view(find_namespace(namespace), None, []))


UNSERVED_METHODS = ["GET", "PUT", "PATCH", "POST", "DELETE", "HEAD"]


def unserved_resource(request: Request, ctx: Ctx, namespace: str, rest: str) -> JsonResponse:
    """What Azure answers for ``.../providers/{namespace}/{type}/{name}[/{type}/{name}...]`` that
    no route serves (see the module's docstring); to signed-in callers only, as every route."""
    authenticate(request, ctx)
    served = find_namespace_or_none(namespace)
    if served is None:
        shown = namespace if len(namespace) <= 64 else namespace[:64] + "..."
        raise ArmError(400, "InvalidResourceNamespace", f"The resource namespace '{shown}' is invalid.")
    words = [word for word in rest.split("/")[::2] if word]
    full_type = "/".join(words)
    if resource_type_versions(f"{served}/{full_type}") is None:
        shown = full_type if len(full_type) <= 128 else full_type[:128] + "..."
        known = ", ".join(t.name for t in PROVIDERS[served])
        raise ArmError(
            400,
            "InvalidResourceType",
            f"The resource type '{shown}' could not be found in the namespace '{served}'. It has: {known}.",
        )
    raise ArmError(
        405,
        "MethodNotAllowed",
        f"The method '{request.method}' is not allowed for '{request.url.path}' ({served}/{full_type}).",
    )


def find_namespace_or_none(namespace: str) -> str | None:
    return _BY_LOWER.get(namespace.lower())


def create_unserved_router() -> APIRouter:
    """The routes of :func:`unserved_resource`: include it after every other router."""
    router = APIRouter()
    for prefix in (
        "/subscriptions/{subscription_id}",
        "/subscriptions/{subscription_id}/resourceGroups/{group}",
    ):
        router.add_api_route(
            prefix + "/providers/{namespace}/{rest:path}",
            unserved_resource,
            methods=UNSERVED_METHODS,
            response_model=None,
            include_in_schema=False,
        )
    return router


def create_router() -> APIRouter:
    router = APIRouter(tags=["providers"])
    subscription = "/subscriptions/{subscription_id}/providers"
    router.add_api_route(subscription, list_subscription_providers, methods=["GET"], response_model=None)
    router.add_api_route(
        subscription + "/{namespace}", get_subscription_provider, methods=["GET"], response_model=None
    )
    router.add_api_route(
        subscription + "/{namespace}/register", register_provider, methods=["POST"], response_model=None
    )
    router.add_api_route("/providers", list_tenant_providers, methods=["GET"], response_model=None)
    router.add_api_route("/providers/{namespace}", get_tenant_provider, methods=["GET"], response_model=None)
    return router
