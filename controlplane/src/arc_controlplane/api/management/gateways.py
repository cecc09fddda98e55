"""Arc gateways (``Microsoft.HybridCompute/gateways``) and a machine's ``settings/default``, the
link to its gateway (docs/gateway.md). The operations are those of ``azure-mgmt-hybridcompute``'s
``gateways`` (create or update and delete are long-running in the SDK; they finish at once here:
PUT answers 201 or 200 with ``provisioningState: Succeeded``, DELETE 202 with an operation that
has already succeeded, or 204) and
``settings`` (get, update = PUT, patch = PATCH).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response

from arc_controlplane.api.management.access import (
    Access,
    GatewayChecks,
    GatewayRef,
    GroupChecks,
    GroupRef,
    MachineChecks,
    MachineRef,
    SubscriptionChecks,
    SubscriptionRef,
    Visibility,
    visibility,
)
from arc_controlplane.api.management.lookups import require_group, require_machine
from arc_controlplane.api.management.machines import MACHINE
from arc_controlplane.api.management.operations import async_operation_headers
from arc_controlplane.api.management.schema import GatewayBody, GatewayUpdate, SettingsBody
from arc_controlplane.api.management.transactions import conflict_on_race
from arc_controlplane.auth.roles import (
    GATEWAYS_DELETE,
    GATEWAYS_JOIN,
    GATEWAYS_READ,
    GATEWAYS_WRITE,
    SETTINGS_READ,
    SETTINGS_WRITE,
)
from arc_controlplane.errors import ArmError
from arc_controlplane.http.audit import set_audit_detail
from arc_controlplane.http.content import require_json_content
from arc_controlplane.http.context import Ctx
from arc_controlplane.http.locations import normalize_location
from arc_controlplane.http.operations import finish_operation, prune_operations, start_operation
from arc_controlplane.http.responses import JsonResponse
from arc_controlplane.http.versions import HYBRID_COMPUTE
from arc_controlplane.machines import gateways as gw
from arc_controlplane.resource_ids import PROVIDER

GATEWAY = (
    "/subscriptions/{subscription_id}/resourceGroups/{resource_group_name}/providers/"
    f"{PROVIDER}/gateways/{{gateway_name}}"
)
GROUP_GATEWAYS = (
    f"/subscriptions/{{subscription_id}}/resourceGroups/{{resource_group_name}}/providers/{PROVIDER}/gateways"
)
SUBSCRIPTION_GATEWAYS = f"/subscriptions/{{subscription_id}}/providers/{PROVIDER}/gateways"
SETTINGS = MACHINE + f"/providers/{PROVIDER}/settings/{{settings_resource_name}}"

GatewayRead = Annotated[Access[GatewayRef], Depends(GatewayChecks(HYBRID_COMPUTE, GATEWAYS_READ))]
GatewayWrite = Annotated[
    Access[GatewayRef], Depends(GatewayChecks(HYBRID_COMPUTE, GATEWAYS_WRITE, change=True))
]
GatewayDelete = Annotated[
    Access[GatewayRef], Depends(GatewayChecks(HYBRID_COMPUTE, GATEWAYS_DELETE, change=True))
]
GroupGateways = Annotated[Access[GroupRef], Depends(GroupChecks(HYBRID_COMPUTE, None))]
SubscriptionGateways = Annotated[Access[SubscriptionRef], Depends(SubscriptionChecks(HYBRID_COMPUTE, None))]
SettingsRead = Annotated[Access[MachineRef], Depends(MachineChecks(HYBRID_COMPUTE, SETTINGS_READ))]
SettingsWrite = Annotated[
    Access[MachineRef], Depends(MachineChecks(HYBRID_COMPUTE, SETTINGS_WRITE, change=True))
]


def _no_service() -> ArmError:
    return ArmError(
        409,
        "GatewayServiceNotRunning",
        "This control plane runs no Arc gateway service, so a gateway could not carry any traffic: start"
        " 'arc-controlplane serve' with --gateway-port PORT (docs/gateway.md), then create the gateway.",
    )


def get_gateway(granted: GatewayRead, ctx: Ctx) -> JsonResponse:
    """Gateways_Get."""
    ref = granted.ref
    with ctx.db.session() as session:
        gateway = gw.find_gateway(session, granted.subscription.id, ref.resource_group, ref.name)
        if gateway is None:
            require_group(session, granted.subscription.id, ref.resource_group)
            raise gw.not_found(ref.resource_group, ref.name)
        return JsonResponse(gw.gateway_view(gateway, ctx.gateway_url))


def put_gateway(
    request: Request,
    granted: GatewayWrite,
    _json: Annotated[None, Depends(require_json_content)],
    body: GatewayBody,
    ctx: Ctx,
) -> JsonResponse:
    """Gateways_CreateOrUpdate: 201 created, 200 replaced (finished at once)."""
    ref = granted.ref
    if ctx.gateway_url is None:
        raise _no_service()
    properties = body.properties
    wanted = gw.GatewayRequest(
        location=body.location,
        tags=body.tags,
        gateway_type=None if properties is None else properties.gateway_type,
        allowed_features=None if properties is None else properties.allowed_features,
        gateway_bypass=None if properties is None else properties.gateway_bypass,
    )
    with ctx.writes.hold(ref.id), conflict_on_race(), ctx.db.session() as session:
        require_group(session, granted.subscription.id, ref.resource_group)
        put = gw.put_gateway(
            session, granted.subscription.id, ref.resource_group, ref.name, wanted, ctx.clock()
        )
        session.flush()
        view = gw.gateway_view(put.gateway, ctx.gateway_url)
        users = [m.vm_id for m in gw.machines_using(session, put.gateway)]
    for vm in users:  # their agents learn the new bypass list
        ctx.notifier.notify(vm)
    set_audit_detail(request, "created" if put.created else "replaced")
    return JsonResponse(view, status_code=201 if put.created else 200)


def patch_gateway(
    request: Request,
    granted: GatewayWrite,
    _json: Annotated[None, Depends(require_json_content)],
    body: GatewayUpdate,
    ctx: Ctx,
) -> JsonResponse:
    """Gateways_Update: tags, allowedFeatures, gatewayBypass; what is absent stays."""
    ref = granted.ref
    properties = body.properties
    with ctx.writes.hold(ref.id), ctx.db.session() as session:
        gateway = gw.find_gateway(
            session, granted.subscription.id, ref.resource_group, ref.name, for_update=True
        )
        if gateway is None:
            require_group(session, granted.subscription.id, ref.resource_group)
            raise gw.not_found(ref.resource_group, ref.name)
        gw.update_gateway(
            gateway,
            body.tags,
            None if properties is None else properties.allowed_features,
            None if properties is None else properties.gateway_bypass,
            ctx.clock(),
        )
        session.flush()
        view = gw.gateway_view(gateway, ctx.gateway_url)
        users = [m.vm_id for m in gw.machines_using(session, gateway)]
    for vm in users:
        ctx.notifier.notify(vm)
    set_audit_detail(request, "updated")
    return JsonResponse(view)


def delete_gateway(request: Request, granted: GatewayDelete, ctx: Ctx) -> Response:
    """Gateways_Delete: 202 with the asynchronous-operation headers (the gateway is gone before
    the answer), 204 when there is none; 409 while machines use it."""
    ref, now = granted.ref, ctx.clock()
    with ctx.writes.hold(ref.id), ctx.db.session() as session:
        gateway = gw.find_gateway(
            session, granted.subscription.id, ref.resource_group, ref.name, for_update=True
        )
        if gateway is None:
            require_group(session, granted.subscription.id, ref.resource_group)
            set_audit_detail(request, "no such gateway")
            return Response(status_code=204)
        operation = start_operation(
            session,
            subscription_id=granted.subscription.id,
            location=normalize_location(gateway.location) or "global",
            resource_id=gateway.resource_id,
            now=now,
        )
        gw.delete_gateway(session, gateway)
        finish_operation(operation, ctx.clock())
        prune_operations(session, now)
        headers = async_operation_headers(ctx.tokens.public_url, operation, granted.api_version)
    set_audit_detail(request, f"operation {operation.id}")
    return Response(status_code=202, headers=headers)


def _visible(ctx: Ctx, subscription_id: str, seen: Visibility, group: str | None) -> JsonResponse:
    with ctx.db.session() as session:
        if group is not None:
            require_group(session, subscription_id, group)
        rows = [
            g
            for g in gw.list_gateways(session, subscription_id, group)
            if seen.covers(g.resource_group_lower, g.resource_id)
        ]
        return JsonResponse({"value": [gw.gateway_view(g, ctx.gateway_url) for g in rows]})


def list_group_gateways(granted: GroupGateways, ctx: Ctx) -> JsonResponse:
    """Gateways_ListByResourceGroup: the ones the caller may read."""
    ref = granted.ref
    seen = visibility(granted.caller, GATEWAYS_READ, granted.subscription.id).within_group(ref.resource_group)
    return _visible(ctx, granted.subscription.id, seen, ref.resource_group)


def list_subscription_gateways(granted: SubscriptionGateways, ctx: Ctx) -> JsonResponse:
    """Gateways_ListBySubscription."""
    seen = visibility(granted.caller, GATEWAYS_READ, granted.subscription.id)
    return _visible(ctx, granted.subscription.id, seen, None)


def _settings_name(ref: MachineRef, name: str) -> None:
    if name.lower() != gw.SETTINGS_NAME:
        raise ArmError(
            404,
            "ResourceNotFound",
            f"The Resource '{PROVIDER}/settings/{name[:64]}' of the machine '{ref.name}' was not found: a"
            " machine has one settings resource, 'default'.",
        )


def get_settings(settings_resource_name: str, granted: SettingsRead, ctx: Ctx) -> JsonResponse:
    """Settings_Get."""
    ref = granted.ref
    _settings_name(ref, settings_resource_name)
    with ctx.db.session() as session:
        machine = require_machine(session, granted.subscription.id, ref.resource_group, ref.name)
        return JsonResponse(gw.settings_view(machine, gw.machine_gateway(session, machine)))


def put_settings(
    request: Request,
    settings_resource_name: str,
    granted: SettingsWrite,
    _json: Annotated[None, Depends(require_json_content)],
    body: SettingsBody,
    ctx: Ctx,
) -> JsonResponse:
    """Settings_Update (PUT) and Settings_Patch (PATCH): link the machine to the gateway named by
    ``gatewayProperties.gatewayResourceId`` (empty or null: to none). Needs
    ``gateways/join/action`` at the gateway."""
    ref = granted.ref
    _settings_name(ref, settings_resource_name)
    given = body.properties.gateway_properties if body.properties is not None else None
    with ctx.writes.hold(ref.id), ctx.db.session() as session:
        machine = require_machine(
            session, granted.subscription.id, ref.resource_group, ref.name, for_update=True
        )
        if given is None and request.method == "PATCH":
            gateway = gw.machine_gateway(session, machine)
        else:
            gateway = gw.resolve_link(session, machine, None if given is None else given.gateway_resource_id)
        if gateway is not None:
            granted.caller.require(GATEWAYS_JOIN, gateway.resource_id)
        changed = gw.link(machine, gateway)
        session.flush()
        view, vm = gw.settings_view(machine, gateway), machine.vm_id
    if changed:
        ctx.notifier.notify(vm)
    set_audit_detail(
        request, ("linked to " + gateway.name if gateway else "no gateway") if changed else "no change"
    )
    return JsonResponse(view)


def create_router() -> APIRouter:
    router = APIRouter(tags=["gateways"])
    router.add_api_route(GATEWAY, get_gateway, methods=["GET"], response_model=None)
    router.add_api_route(GATEWAY, put_gateway, methods=["PUT"], response_model=None)
    router.add_api_route(GATEWAY, patch_gateway, methods=["PATCH"], response_model=None)
    router.add_api_route(GATEWAY, delete_gateway, methods=["DELETE"], response_model=None)
    router.add_api_route(GROUP_GATEWAYS, list_group_gateways, methods=["GET"], response_model=None)
    router.add_api_route(
        SUBSCRIPTION_GATEWAYS, list_subscription_gateways, methods=["GET"], response_model=None
    )
    router.add_api_route(SETTINGS, get_settings, methods=["GET"], response_model=None)
    router.add_api_route(SETTINGS, put_settings, methods=["PUT", "PATCH"], response_model=None)
    return router
