"""Subscriptions and tenants (Microsoft.Resources): what a caller signed in to this control plane
may see, as ``az login`` and ``az account`` read it.

- ``GET /subscriptions``: the subscriptions of the caller's tenant in which it holds any role
  assignment (at the subscription or below it), as Azure lists them;
- ``GET /subscriptions/{id}``: one of them (403 ``AuthorizationFailed`` for one it has no access
  to, 404 ``SubscriptionNotFound`` for one that does not exist);
- ``GET /tenants``: the caller's tenant.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from sqlalchemy import select

from arc_controlplane.api.management.access import Access, SubscriptionChecks, SubscriptionRef
from arc_controlplane.db.tables import Subscription, Tenant
from arc_controlplane.errors import ArmError
from arc_controlplane.http.caller import authenticate
from arc_controlplane.http.context import Ctx
from arc_controlplane.http.responses import JsonResponse
from arc_controlplane.http.versions import SUBSCRIPTIONS, ApiVersionParameter
from arc_controlplane.resource_ids import subscription_scope

SUBSCRIPTION_READ = "Microsoft.Resources/subscriptions/read"
SubscriptionRead = Annotated[Access[SubscriptionRef], Depends(SubscriptionChecks(SUBSCRIPTIONS, None))]


def subscription_view(row: Subscription) -> dict[str, Any]:
    """A subscription in the shape of Subscriptions_Get (2022-12-01)."""
    return {
        "id": subscription_scope(row.id),
        "authorizationSource": "RoleBased",
        "managedByTenants": [],
        "subscriptionId": row.id,
        "tenantId": row.tenant_id,
        "displayName": row.display_name,
        "state": "Enabled",
        "subscriptionPolicies": {
            "locationPlacementId": "Public_2014-09-01",
            "quotaId": "PayAsYouGo_2014-09-01",
            "spendingLimit": "Off",
        },
    }


def list_subscriptions(request: Request, ctx: Ctx, api_version: ApiVersionParameter = None) -> JsonResponse:
    """Subscriptions_List: the caller's tenant's subscriptions it has access to (one page)."""
    caller = authenticate(request, ctx)
    SUBSCRIPTIONS.check(api_version)
    with ctx.db.session() as session:
        rows = session.scalars(
            select(Subscription).where(Subscription.tenant_id == caller.tenant_id).order_by(Subscription.id)
        ).all()
        value = [subscription_view(row) for row in rows if caller.reaches(subscription_scope(row.id))]
    return JsonResponse({"value": value})


def get_subscription(granted: SubscriptionRead, ctx: Ctx) -> JsonResponse:
    """Subscriptions_Get."""
    granted.caller.require_presence(SUBSCRIPTION_READ, granted.ref.id)
    with ctx.db.session() as session:
        row = session.get(Subscription, granted.subscription.id)
        if row is None:  # deleted since the checks ran
            raise ArmError(
                404,
                "SubscriptionNotFound",
                f"The subscription '{granted.ref.subscription_id}' could not be found.",
            )
        view = subscription_view(row)
    return JsonResponse(view)


def list_tenants(request: Request, ctx: Ctx, api_version: ApiVersionParameter = None) -> JsonResponse:
    """Tenants_List: the caller's own tenant."""
    caller = authenticate(request, ctx)
    SUBSCRIPTIONS.check(api_version)
    with ctx.db.session() as session:
        tenant = session.get(Tenant, caller.tenant_id)
        name = tenant.display_name if tenant is not None else caller.tenant_id
    return JsonResponse(
        {
            "value": [
                {
                    "id": f"/tenants/{caller.tenant_id}",
                    "tenantId": caller.tenant_id,
                    "tenantCategory": "Home",
                    "displayName": name,
                    "domains": [],
                }
            ]
        }
    )


def create_router() -> APIRouter:
    router = APIRouter(tags=["subscriptions"])
    router.add_api_route("/subscriptions", list_subscriptions, methods=["GET"], response_model=None)
    router.add_api_route(
        "/subscriptions/{subscription_id}", get_subscription, methods=["GET"], response_model=None
    )
    router.add_api_route("/tenants", list_tenants, methods=["GET"], response_model=None)
    return router
