"""Machine extensions (``Microsoft.HybridCompute/machines/extensions``): GET, PUT, PATCH, DELETE
and the list (docs/extensions.md).

A PUT or PATCH that gives the agent work answers 202 with the asynchronous-operation headers
(``Azure-AsyncOperation``, ``Location``, ``Retry-After``) and wakes the agent's long-poll; the
operation ends when the agent reports the outcome (``api/agent/extensions.py``), and
``azure-mgmt-hybridcompute`` then reads the extension again. One that changes nothing answers 200
with the extension. DELETE answers 202 the same way while the agent removes the extension (200
when there is no agent to ask: a machine never connected), 204 when there is no such extension.
Protected settings are encrypted on arrival and never answered (``machines/protected_settings.py``).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from arc_controlplane.api.management.access import (
    Access,
    ExtensionChecks,
    ExtensionRef,
    MachineChecks,
    MachineRef,
)
from arc_controlplane.api.management.lookups import require_machine
from arc_controlplane.api.management.machines import MACHINE, Expand
from arc_controlplane.api.management.operations import (
    async_operation_headers,
    expire_extensions,
    start_machine_operation,
)
from arc_controlplane.api.management.schema import ExtensionBody, ExtensionUpdate, ExtensionUpgradeBody
from arc_controlplane.auth.roles import EXTENSIONS_DELETE, EXTENSIONS_READ, EXTENSIONS_WRITE
from arc_controlplane.db.tables import Machine, MachineExtension
from arc_controlplane.endpoints import MANAGEMENT
from arc_controlplane.http.audit import set_audit_detail
from arc_controlplane.http.content import require_json_content
from arc_controlplane.http.context import AppContext, Ctx
from arc_controlplane.http.operations import cancel_operation
from arc_controlplane.http.paging import PAGE_SIZE, SkipTokenParameter, decode_skip_token, next_link
from arc_controlplane.http.responses import JsonResponse
from arc_controlplane.http.versions import HYBRID_COMPUTE
from arc_controlplane.machines import protected_settings
from arc_controlplane.machines.extensions import (
    AGENT_FIELDS,
    ExtensionRequest,
    apply_request,
    extension_not_found,
    extension_view,
    find_extension,
    request_delete,
    request_upgrades,
    resource_id,
)

EXTENSIONS = MACHINE + "/extensions"
EXTENSION = EXTENSIONS + "/{extension_name}"

ExtensionRead = Annotated[Access[ExtensionRef], Depends(ExtensionChecks(HYBRID_COMPUTE, EXTENSIONS_READ))]
ExtensionWrite = Annotated[
    Access[ExtensionRef], Depends(ExtensionChecks(HYBRID_COMPUTE, EXTENSIONS_WRITE, change=True))
]
ExtensionDelete = Annotated[
    Access[ExtensionRef], Depends(ExtensionChecks(HYBRID_COMPUTE, EXTENSIONS_DELETE, change=True))
]
MachineExtensions = Annotated[Access[MachineRef], Depends(MachineChecks(HYBRID_COMPUTE, EXTENSIONS_READ))]


def _request(body: ExtensionBody | ExtensionUpdate, *, replace: bool) -> ExtensionRequest:
    properties = body.properties
    given = frozenset() if properties is None else frozenset(properties.model_fields_set)
    values: dict[str, Any] = {
        field: getattr(properties, field) for field in AGENT_FIELDS if properties is not None
    }
    protected = None if properties is None else properties.protected_settings
    tags = dict(body.tags) if body.tags is not None else None
    return ExtensionRequest(
        given=frozenset(field for field in given if field in AGENT_FIELDS),
        values=values,
        protected=protected,
        tags=tags,
        replace=replace,
    )


def _machine(session: Session, ref: ExtensionRef, subscription_id: str) -> Machine:
    """The extension's machine, locked for the change."""
    return require_machine(session, subscription_id, ref.resource_group, ref.machine, for_update=True)


def get_extension(granted: ExtensionRead, _expand: Expand, ctx: Ctx) -> JsonResponse:
    """MachineExtensions_Get."""
    ref = granted.ref
    with ctx.db.session() as session:
        machine = require_machine(session, granted.subscription.id, ref.resource_group, ref.machine)
        expire_extensions(session, machine, ctx)
        extension = find_extension(session, machine, ref.name)
        if extension is None:
            raise extension_not_found(machine, ref.name)
        view = extension_view(machine, extension)
    return JsonResponse(view)


def _change(
    request: Request, granted: Access[ExtensionRef], ctx: AppContext, wanted: ExtensionRequest
) -> Response:
    """Apply ``wanted``: 202 with the operation's headers when the agent has work, else 200."""
    ref, now = granted.ref, ctx.clock()
    key = protected_settings.digest_key(ctx.tokens.key.private_key)
    with ctx.writes.hold(ref.machine_ref.id), ctx.db.session() as session:
        machine = _machine(session, ref, granted.subscription.id)
        existing = find_extension(session, machine, ref.name, for_update=True)
        if existing is None and not wanted.replace:
            raise extension_not_found(machine, ref.name)
        change = apply_request(session, machine, existing, ref.name, wanted, digest_key=key, now=now)
        headers: dict[str, str] = {}
        if change.work:
            cancel_operation(session, change.replaced_operation, now)
            session.flush()
            operation = start_machine_operation(
                session, granted.subscription.id, machine, resource_id(machine, change.extension), now
            )
            change.extension.operation_id = operation.id
            headers = async_operation_headers(
                ctx.url_for(MANAGEMENT, request), operation, granted.api_version
            )
        session.flush()
        view, vm = extension_view(machine, change.extension), machine.vm_id
    if change.work:
        ctx.notifier.notify(vm)
        set_audit_detail(
            request, ("created" if change.created else "updated") + f", operation {operation.id}"
        )
        return JsonResponse(view, status_code=202, headers=headers)
    set_audit_detail(request, "no change")
    return JsonResponse(view)


def put_extension(
    request: Request,
    granted: ExtensionWrite,
    _json: Annotated[None, Depends(require_json_content)],
    body: ExtensionBody,
    ctx: Ctx,
) -> Response:
    """MachineExtensions_CreateOrUpdate: what the body gives replaces the extension."""
    return _change(request, granted, ctx, _request(body, replace=True))


def patch_extension(
    request: Request,
    granted: ExtensionWrite,
    _json: Annotated[None, Depends(require_json_content)],
    body: ExtensionUpdate,
    ctx: Ctx,
) -> Response:
    """MachineExtensions_Update: what the body gives; what is absent stays."""
    return _change(request, granted, ctx, _request(body, replace=False))


def delete_extension(request: Request, granted: ExtensionDelete, ctx: Ctx) -> Response:
    """MachineExtensions_Delete: 202 while the agent removes it, 200 at once when no agent ever
    connected, 204 when there is no such extension."""
    ref, now = granted.ref, ctx.clock()
    with ctx.writes.hold(ref.machine_ref.id), ctx.db.session() as session:
        machine = _machine(session, ref, granted.subscription.id)
        extension = find_extension(session, machine, ref.name, for_update=True)
        if extension is None:
            set_audit_detail(request, "no such extension")
            return Response(status_code=204)
        if not machine.connected:
            cancel_operation(session, extension.operation_id, now)
            session.delete(extension)
            set_audit_detail(request, "removed (no agent to ask)")
            return Response(status_code=200)
        cancel_operation(session, request_delete(machine, extension, now), now)
        session.flush()
        operation = start_machine_operation(
            session, granted.subscription.id, machine, resource_id(machine, extension), now
        )
        extension.operation_id = operation.id
        headers = async_operation_headers(ctx.url_for(MANAGEMENT, request), operation, granted.api_version)
        vm = machine.vm_id
    ctx.notifier.notify(vm)
    set_audit_detail(request, f"operation {operation.id}")
    return Response(status_code=202, headers=headers)


UPGRADE_ACTION = "Microsoft.HybridCompute/machines/upgradeExtensions/action"
MachineUpgrade = Annotated[
    Access[MachineRef], Depends(MachineChecks(HYBRID_COMPUTE, UPGRADE_ACTION, change=True))
]


def upgrade_extensions(
    request: Request,
    granted: MachineUpgrade,
    _json: Annotated[None, Depends(require_json_content)],
    body: ExtensionUpgradeBody,
    ctx: Ctx,
) -> Response:
    """Machines_UpgradeExtensions: each named extension to its target version, as one operation
    that ends when the agent has reported on all of them; 200 when none changes."""
    ref, now = granted.ref, ctx.clock()
    targets = {key: target.target_version for key, target in body.extension_targets.items()}
    with ctx.writes.hold(ref.id), ctx.db.session() as session:
        machine = require_machine(
            session, granted.subscription.id, ref.resource_group, ref.name, for_update=True
        )
        changed, replaced = request_upgrades(session, machine, targets, now)
        if not changed:
            set_audit_detail(request, "no change")
            return Response(status_code=200)
        for operation_id in replaced:
            cancel_operation(session, operation_id, now)
        session.flush()
        operation = start_machine_operation(
            session, granted.subscription.id, machine, machine.resource_id, now
        )
        for extension in changed:
            extension.operation_id = operation.id
        headers = async_operation_headers(ctx.url_for(MANAGEMENT, request), operation, granted.api_version)
        vm = machine.vm_id
    ctx.notifier.notify(vm)
    set_audit_detail(request, f"upgrading {', '.join(sorted(targets))}, operation {operation.id}")
    return Response(status_code=202, headers=headers)


def list_extensions(
    request: Request,
    granted: MachineExtensions,
    _expand: Expand,
    ctx: Ctx,
    skiptoken: SkipTokenParameter = None,
) -> JsonResponse:
    """MachineExtensions_List: 100 a page."""
    ref = granted.ref
    after = decode_skip_token(skiptoken)
    with ctx.db.session() as session:
        machine = require_machine(session, granted.subscription.id, ref.resource_group, ref.name)
        expire_extensions(session, machine, ctx)
        query = select(MachineExtension).where(MachineExtension.machine_id == machine.id)
        if after is not None:
            query = query.where(MachineExtension.id > after)
        rows = list(session.scalars(query.order_by(MachineExtension.id).limit(PAGE_SIZE + 1)))
        page = rows[:PAGE_SIZE]
        body: dict[str, Any] = {"value": [extension_view(machine, extension) for extension in page]}
    if len(rows) > PAGE_SIZE:
        body["nextLink"] = next_link(
            ctx.url_for(MANAGEMENT, request), request.url.path, request.query_params, page[-1].id
        )
    return JsonResponse(body)


def create_router() -> APIRouter:
    router = APIRouter(tags=["extensions"])
    router.add_api_route(EXTENSIONS, list_extensions, methods=["GET"], response_model=None)
    router.add_api_route(EXTENSION, get_extension, methods=["GET"], response_model=None)
    router.add_api_route(EXTENSION, put_extension, methods=["PUT"], response_model=None)
    router.add_api_route(EXTENSION, patch_extension, methods=["PATCH"], response_model=None)
    router.add_api_route(EXTENSION, delete_extension, methods=["DELETE"], response_model=None)
    router.add_api_route(
        MACHINE + "/upgradeExtensions", upgrade_extensions, methods=["POST"], response_model=None
    )
    return router
