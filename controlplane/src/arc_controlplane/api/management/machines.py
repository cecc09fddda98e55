"""Machines (``Microsoft.HybridCompute/machines``): GET, PUT, PATCH, DELETE and the two lists.

PUT pre-creates a machine (``AwaitingConnection`` until an agent registers) or updates one: it
replaces tags and kind and sets the settable properties it carries, and answers 200 both times
(the Machines_CreateOrUpdate contract; Azure's SDK accepts nothing else). PATCH applies a
``MachineUpdate``; a change of ``agentUpgrade`` bumps the machine's generation and wakes its
agent's long-poll. GET, PUT and PATCH answer the machine's ``ETag``; PUT, PATCH and DELETE honour
``If-Match`` and ``If-None-Match`` (``http/conditions.py``), one write of a machine at a time.
DELETE removes the machine and its managed identity before answering 202
with the asynchronous-operation headers (see :mod:`arc_controlplane.api.management.operations`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from arc_controlplane.api.management.access import (
    Access,
    GroupChecks,
    GroupRef,
    MachineChecks,
    MachineRef,
    SubscriptionChecks,
    SubscriptionRef,
    visibility,
)
from arc_controlplane.api.management.lookups import find_machine, require_group, require_machine
from arc_controlplane.api.management.operations import async_operation_headers, start_machine_operation
from arc_controlplane.api.management.schema import MachineBody, MachineUpdate, property_changes
from arc_controlplane.api.management.transactions import conflict_on_race
from arc_controlplane.auth.roles import MACHINES_DELETE, MACHINES_READ, MACHINES_WRITE
from arc_controlplane.db.tables import Machine
from arc_controlplane.endpoints import MANAGEMENT
from arc_controlplane.errors import ArmError
from arc_controlplane.http.audit import set_audit_detail
from arc_controlplane.http.conditions import check_conditions, etag_of
from arc_controlplane.http.content import require_json_content
from arc_controlplane.http.context import Ctx
from arc_controlplane.http.locations import normalize_location
from arc_controlplane.http.operations import finish_operation, prune_operations
from arc_controlplane.http.paging import PAGE_SIZE, SkipTokenParameter, decode_skip_token, next_link
from arc_controlplane.http.responses import JsonResponse
from arc_controlplane.http.versions import HYBRID_COMPUTE
from arc_controlplane.machines import agent_packages
from arc_controlplane.machines.lifecycle import MachineChanges, apply_changes, create_machine, delete_machine
from arc_controlplane.machines.view import machine_version, machine_view
from arc_controlplane.resource_ids import PROVIDER

MACHINE = (
    "/subscriptions/{subscription_id}/resourceGroups/{resource_group_name}/providers/"
    f"{PROVIDER}/machines/{{machine_name}}"
)
GROUP_MACHINES = (
    f"/subscriptions/{{subscription_id}}/resourceGroups/{{resource_group_name}}/providers/{PROVIDER}/machines"
)
SUBSCRIPTION_MACHINES = f"/subscriptions/{{subscription_id}}/providers/{PROVIDER}/machines"
EXPAND_VALUES = ("instanceView",)

MachineRead = Annotated[Access[MachineRef], Depends(MachineChecks(HYBRID_COMPUTE, MACHINES_READ))]
MachineWrite = Annotated[
    Access[MachineRef], Depends(MachineChecks(HYBRID_COMPUTE, MACHINES_WRITE, change=True))
]
MachineDelete = Annotated[
    Access[MachineRef], Depends(MachineChecks(HYBRID_COMPUTE, MACHINES_DELETE, change=True))
]
GroupMachines = Annotated[Access[GroupRef], Depends(GroupChecks(HYBRID_COMPUTE, None))]
SubscriptionMachines = Annotated[Access[SubscriptionRef], Depends(SubscriptionChecks(HYBRID_COMPUTE, None))]


def check_expand(
    value: Annotated[str | None, Query(alias="$expand", description="'instanceView' (accepted).")] = None,
) -> str | None:
    """``$expand``: only ``instanceView`` (the machine's answer carries its whole state anyway)."""
    if value is not None and value.lower() not in {v.lower() for v in EXPAND_VALUES}:
        shown = value if len(value) <= 64 else value[:64] + "..."
        raise ArmError(
            400, "InvalidParameter", f"The $expand value '{shown}' is not supported: use 'instanceView'."
        )
    return value


Expand = Annotated[str | None, Depends(check_expand)]


def get_machine(granted: MachineRead, _expand: Expand, ctx: Ctx) -> JsonResponse:
    """Machines_Get, with the machine's ``ETag``."""
    ref = granted.ref
    with ctx.db.session() as session:
        machine = require_machine(session, granted.subscription.id, ref.resource_group, ref.name)
        view, etag = machine_view(machine, ctx.clock(), ctx.timing), etag_of(machine_version(machine))
    return JsonResponse(view, headers={"ETag": etag})


def put_machine(
    request: Request,
    granted: MachineWrite,
    _json: Annotated[None, Depends(require_json_content)],
    body: MachineBody,
    ctx: Ctx,
) -> JsonResponse:
    """Machines_CreateOrUpdate: pre-create (``AwaitingConnection``) or update; 200 both times."""
    ref, now = granted.ref, ctx.clock()
    stored = property_changes(body.properties)
    vm_id = body.properties.vm_id if body.properties else None
    changes = MachineChanges(tags=dict(body.tags or {}), kind=body.kind, set_kind=True, properties=stored)
    with ctx.writes.hold(ref.id), conflict_on_race(), ctx.db.session() as session:
        group = require_group(session, granted.subscription.id, ref.resource_group)
        machine = find_machine(
            session, granted.subscription.id, ref.resource_group, ref.name, for_update=True
        )
        check_conditions(request.headers, None if machine is None else etag_of(machine_version(machine)))
        _require_published_version(session, stored)
        if machine is None:
            if vm_id is not None:
                _require_unused_vm_id(session, vm_id)
            machine = create_machine(
                session,
                group=group,
                name=ref.name,
                location=body.location,
                tenant_id=granted.subscription.tenant_id,
                now=now,
                vm_id=vm_id,
                changes=changes,
            )
            created, work = True, False
        else:
            _check_unchanged(machine, body.location, vm_id)
            created, work = False, apply_changes(machine, changes, now)
            session.flush()
        vm, view, etag = (
            machine.vm_id,
            machine_view(machine, now, ctx.timing),
            etag_of(machine_version(machine)),
        )
    if work:
        ctx.notifier.notify(vm)
    set_audit_detail(request, "created" if created else "updated")
    return JsonResponse(view, headers={"ETag": etag})


def _require_published_version(session: Session, properties: Mapping[str, Any] | None) -> None:
    """400 when ``agentUpgrade.desiredVersion`` names a version the agent package store lacks
    (the agent could not act on it)."""
    upgrade = (properties or {}).get("agentUpgrade") or {}
    wanted = upgrade.get("desiredVersion")
    if wanted and agent_packages.published_version(session, wanted) is None:
        known = agent_packages.versions(session)
        raise ArmError(
            400,
            "InvalidAgentVersion",
            f"The agent version '{wanted}' is not published in this control plane's agent package store"
            f" ({'published: ' + ', '.join(known[-5:]) if known else 'nothing is published'}); publish it"
            " with 'arc-controlplane agent publish BUNDLE_DIR' or choose a published version.",
        )


def _require_unused_vm_id(session: Session, vm_id: str) -> None:
    if session.scalars(select(Machine.id).where(Machine.vm_id == vm_id)).first() is not None:
        raise ArmError(409, "Conflict", f"Another machine already has the vmId '{vm_id}'.")


def _check_unchanged(machine: Machine, location: str, vm_id: str | None) -> None:
    if normalize_location(machine.location) != location:
        raise ArmError(
            409,
            "InvalidResourceLocation",
            f"The resource '{machine.name}' already exists in location '{machine.location}'. A resource "
            f"with the same name cannot be created in location '{location}'. Please select a new "
            "resource name.",
        )
    if vm_id is not None and vm_id != machine.vm_id.lower():
        raise ArmError(
            409,
            "PropertyChangeNotAllowed",
            f"Changing property 'vmId' is not allowed: the machine's vmId is '{machine.vm_id}'.",
        )


def patch_machine(
    request: Request,
    granted: MachineWrite,
    _json: Annotated[None, Depends(require_json_content)],
    body: MachineUpdate,
    ctx: Ctx,
) -> JsonResponse:
    """Machines_Update: tags, kind and the ``MachineUpdateProperties``; what is absent stays."""
    ref, now = granted.ref, ctx.clock()
    given = body.model_fields_set
    changes = MachineChanges(
        tags=dict(body.tags or {}) if "tags" in given else None,
        kind=body.kind,
        set_kind="kind" in given,
        properties=property_changes(body.properties),
    )
    with ctx.writes.hold(ref.id), ctx.db.session() as session:
        machine = require_machine(
            session, granted.subscription.id, ref.resource_group, ref.name, for_update=True
        )
        check_conditions(request.headers, etag_of(machine_version(machine)))
        _require_published_version(session, changes.properties)
        work = apply_changes(machine, changes, now)
        session.flush()
        vm, view, etag = (
            machine.vm_id,
            machine_view(machine, now, ctx.timing),
            etag_of(machine_version(machine)),
        )
    if work:
        ctx.notifier.notify(vm)
    changed = sorted((given - {"properties"}) | {f"properties.{name}" for name in changes.properties or {}})
    set_audit_detail(request, "changed " + ", ".join(changed) if changed else "no change")
    return JsonResponse(view, headers={"ETag": etag})


def delete_machine_route(request: Request, granted: MachineDelete, ctx: Ctx) -> Response:
    """Machines_Delete: 202 with ``Azure-AsyncOperation``, ``Location`` and ``Retry-After``; 204
    when there is no such machine. The machine and its identity are gone before the answer."""
    ref, now = granted.ref, ctx.clock()
    with ctx.writes.hold(ref.id), ctx.db.session() as session:
        require_group(session, granted.subscription.id, ref.resource_group)
        machine = find_machine(
            session, granted.subscription.id, ref.resource_group, ref.name, for_update=True
        )
        check_conditions(request.headers, None if machine is None else etag_of(machine_version(machine)))
        if machine is None:
            set_audit_detail(request, "no such machine")
            return Response(status_code=204)
        operation = start_machine_operation(
            session, granted.subscription.id, machine, machine.resource_id, now
        )
        vm = machine.vm_id
        delete_machine(session, machine)
        finish_operation(operation, ctx.clock())
        prune_operations(session, now)
        headers = async_operation_headers(ctx.url_for(MANAGEMENT, request), operation, granted.api_version)
    ctx.notifier.notify(vm)
    set_audit_detail(request, f"operation {operation.id}")
    return Response(status_code=202, headers=headers)


def list_group_machines(
    request: Request, granted: GroupMachines, _expand: Expand, ctx: Ctx, skiptoken: SkipTokenParameter = None
) -> JsonResponse:
    """Machines_ListByResourceGroup: the machines the caller may read, 100 a page."""
    ref = granted.ref
    seen = visibility(granted.caller, MACHINES_READ, granted.subscription.id).within_group(ref.resource_group)
    if seen.empty:
        granted.caller.require(MACHINES_READ, ref.id)
    with ctx.db.session() as session:
        require_group(session, granted.subscription.id, ref.resource_group)
        query = select(Machine).where(
            Machine.subscription_id == granted.subscription.id,
            Machine.resource_group_lower == ref.resource_group.lower(),
            seen.machine_filter(),
        )
        body = _page(request, ctx, session, query, skiptoken)
    return JsonResponse(body)


def list_subscription_machines(
    request: Request,
    granted: SubscriptionMachines,
    _expand: Expand,
    ctx: Ctx,
    skiptoken: SkipTokenParameter = None,
) -> JsonResponse:
    """Machines_ListBySubscription: the machines the caller may read, 100 a page."""
    seen = visibility(granted.caller, MACHINES_READ, granted.subscription.id)
    if seen.empty:
        granted.caller.require(MACHINES_READ, granted.ref.id)
    query = select(Machine).where(Machine.subscription_id == granted.subscription.id, seen.machine_filter())
    with ctx.db.session() as session:
        body = _page(request, ctx, session, query, skiptoken)
    return JsonResponse(body)


def _page(
    request: Request, ctx: Ctx, session: Session, query: Select[Machine], skiptoken: str | None
) -> dict[str, Any]:
    after = decode_skip_token(skiptoken)
    if after is not None:
        query = query.where(Machine.id > after)
    rows: list[Machine] = list(session.scalars(query.order_by(Machine.id).limit(PAGE_SIZE + 1)))
    page, now = rows[:PAGE_SIZE], ctx.clock()
    body: dict[str, Any] = {"value": [machine_view(machine, now, ctx.timing) for machine in page]}
    if len(rows) > PAGE_SIZE:
        body["nextLink"] = next_link(
            ctx.url_for(MANAGEMENT, request), request.url.path, request.query_params, page[-1].id
        )
    return body


def create_router() -> APIRouter:
    router = APIRouter(tags=["machines"])
    router.add_api_route(
        SUBSCRIPTION_MACHINES, list_subscription_machines, methods=["GET"], response_model=None
    )
    router.add_api_route(GROUP_MACHINES, list_group_machines, methods=["GET"], response_model=None)
    router.add_api_route(MACHINE, get_machine, methods=["GET"], response_model=None)
    router.add_api_route(MACHINE, put_machine, methods=["PUT"], response_model=None)
    router.add_api_route(MACHINE, patch_machine, methods=["PATCH"], response_model=None)
    router.add_api_route(MACHINE, delete_machine_route, methods=["DELETE"], response_model=None)
    return router
