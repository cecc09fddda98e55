"""Resource groups (Microsoft.Resources): PUT, PATCH (tags), GET, HEAD, DELETE and list in a
subscription.

DELETE refuses a group that still holds machines (409 ``ResourceGroupNotEmpty``) instead of
deleting them with it, and removes the role assignments made at or below the group's scope.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response
from sqlalchemy import delete, func, or_, select
from sqlalchemy.orm import Session

from arc_controlplane.api.management.access import (
    Access,
    GroupChecks,
    GroupRef,
    SubscriptionChecks,
    SubscriptionRef,
    visibility,
)
from arc_controlplane.api.management.lookups import find_group, require_group
from arc_controlplane.api.management.schema import ResourceGroupBody, ResourceGroupUpdate
from arc_controlplane.api.management.transactions import conflict_on_race
from arc_controlplane.auth.roles import RESOURCE_GROUPS_DELETE, RESOURCE_GROUPS_READ, RESOURCE_GROUPS_WRITE
from arc_controlplane.db.tables import Machine, ResourceGroup, RoleAssignment
from arc_controlplane.endpoints import MANAGEMENT
from arc_controlplane.errors import ArmError
from arc_controlplane.http.audit import set_audit_detail
from arc_controlplane.http.content import require_json_content
from arc_controlplane.http.context import Ctx
from arc_controlplane.http.locations import normalize_location
from arc_controlplane.http.paging import PAGE_SIZE, SkipTokenParameter, decode_skip_token, next_link
from arc_controlplane.http.responses import JsonResponse
from arc_controlplane.http.versions import RESOURCES
from arc_controlplane.resource_ids import resource_group_id

GROUP = "/subscriptions/{subscription_id}/resourceGroups/{resource_group_name}"
GROUPS = "/subscriptions/{subscription_id}/resourceGroups"
GROUP_TYPE = "Microsoft.Resources/resourceGroups"
NAMES_SHOWN = 10

GroupRead = Annotated[Access[GroupRef], Depends(GroupChecks(RESOURCES, RESOURCE_GROUPS_READ))]
GroupWrite = Annotated[Access[GroupRef], Depends(GroupChecks(RESOURCES, RESOURCE_GROUPS_WRITE, change=True))]
GroupDelete = Annotated[
    Access[GroupRef], Depends(GroupChecks(RESOURCES, RESOURCE_GROUPS_DELETE, change=True))
]
GroupList = Annotated[Access[SubscriptionRef], Depends(SubscriptionChecks(RESOURCES, None))]


def group_view(group: ResourceGroup) -> dict[str, Any]:
    view: dict[str, Any] = {
        "id": resource_group_id(group.subscription_id, group.name),
        "name": group.name,
        "type": GROUP_TYPE,
        "location": group.location,
        "properties": {"provisioningState": "Succeeded"},
    }
    if group.tags:
        view["tags"] = group.tags
    return view


def put_group(
    request: Request,
    granted: GroupWrite,
    _json: Annotated[None, Depends(require_json_content)],
    body: ResourceGroupBody,
    ctx: Ctx,
) -> JsonResponse:
    """ResourceGroups_CreateOrUpdate: 201 when created, 200 when updated."""
    ref, now = granted.ref, ctx.clock()
    with conflict_on_race(), ctx.db.session() as session:
        group = find_group(session, granted.subscription.id, ref.resource_group)
        created = group is None
        if group is None:
            group = ResourceGroup(
                subscription_id=granted.subscription.id,
                name=ref.resource_group,
                name_lower=ref.resource_group.lower(),
                location=body.location,
                tags=dict(body.tags or {}),
                created_at=now,
            )
            session.add(group)
        elif normalize_location(group.location) != body.location:
            raise _location_conflict(body.location, group.location)
        else:
            group.tags = dict(body.tags or {})
        session.flush()
        view = group_view(group)
    set_audit_detail(request, "created" if created else "updated")
    return JsonResponse(view, status_code=201 if created else 200)


def patch_group(
    request: Request,
    granted: GroupWrite,
    _json: Annotated[None, Depends(require_json_content)],
    body: ResourceGroupUpdate,
    ctx: Ctx,
) -> JsonResponse:
    """ResourceGroups_Update: replaces the tags when the body has them (``az resource tag`` and
    ``az group update`` send them); everything else stays."""
    with ctx.db.session() as session:
        group = require_group(session, granted.subscription.id, granted.ref.resource_group)
        changed = "tags" in body.model_fields_set
        if changed:
            group.tags = dict(body.tags or {})
        session.flush()
        view = group_view(group)
    set_audit_detail(request, "changed tags" if changed else "no change")
    return JsonResponse(view)


def _location_conflict(wanted: str, existing: str) -> ArmError:
    return ArmError(
        409,
        "InvalidResourceGroupLocation",
        f"Invalid resource group location '{wanted}'. The Resource group already exists in location "
        f"'{existing}'.",
    )


def get_group(granted: GroupRead, ctx: Ctx) -> JsonResponse:
    """ResourceGroups_Get."""
    with ctx.db.session() as session:
        view = group_view(require_group(session, granted.subscription.id, granted.ref.resource_group))
    return JsonResponse(view)


def group_exists(granted: GroupRead, ctx: Ctx) -> Response:
    """ResourceGroups_CheckExistence: 204 when the group exists, 404 when not."""
    with ctx.db.session() as session:
        found = find_group(session, granted.subscription.id, granted.ref.resource_group) is not None
    return Response(status_code=204 if found else 404)


def delete_group(request: Request, granted: GroupDelete, ctx: Ctx) -> Response:
    """ResourceGroups_Delete, done before answering (200). Refused while machines remain (409)."""
    ref = granted.ref
    with ctx.db.session() as session:
        group = require_group(session, granted.subscription.id, ref.resource_group)
        machines = _machine_names(session, group)
        if machines:
            raise _not_empty(group.name, machines)
        scope = resource_group_id(group.subscription_id, group.name).lower()
        session.execute(
            delete(RoleAssignment).where(
                or_(RoleAssignment.scope_lower == scope, RoleAssignment.scope_lower.startswith(scope + "/"))
            )
        )
        session.delete(group)
    set_audit_detail(request, "deleted")
    return Response(status_code=200)


def _machine_names(session: Session, group: ResourceGroup) -> tuple[int, list[str]] | None:
    in_group = (Machine.subscription_id == group.subscription_id) & (
        Machine.resource_group_lower == group.name_lower
    )
    count = session.scalar(select(func.count()).select_from(Machine).where(in_group)) or 0
    if not count:
        return None
    names = session.scalars(select(Machine.name).where(in_group).order_by(Machine.id).limit(NAMES_SHOWN))
    return count, list(names)


def _not_empty(group: str, machines: tuple[int, list[str]]) -> ArmError:
    count, names = machines
    more = f" and {count - len(names)} more" if count > len(names) else ""
    return ArmError(
        409,
        "ResourceGroupNotEmpty",
        f"The resource group '{group}' still holds {count} machine(s): {', '.join(names)}{more}. "
        "Delete them first; groups are not deleted with their resources here.",
    )


def list_groups(
    request: Request, granted: GroupList, ctx: Ctx, skiptoken: SkipTokenParameter = None
) -> JsonResponse:
    """ResourceGroups_List: the groups the caller may read, 100 a page, ``nextLink`` to the next."""
    after = decode_skip_token(skiptoken)
    seen = visibility(granted.caller, RESOURCE_GROUPS_READ, granted.subscription.id)
    if seen.empty:
        granted.caller.require(RESOURCE_GROUPS_READ, granted.ref.id)
    query = (
        select(ResourceGroup)
        .where(ResourceGroup.subscription_id == granted.subscription.id, seen.group_filter())
        .order_by(ResourceGroup.id)
        .limit(PAGE_SIZE + 1)
    )
    if after is not None:
        query = query.where(ResourceGroup.id > after)
    with ctx.db.session() as session:
        rows = list(session.scalars(query))
        page = rows[:PAGE_SIZE]
        body: dict[str, Any] = {"value": [group_view(group) for group in page]}
    if len(rows) > PAGE_SIZE:
        body["nextLink"] = next_link(
            ctx.url_for(MANAGEMENT, request), request.url.path, request.query_params, page[-1].id
        )
    return JsonResponse(body)


def create_router() -> APIRouter:
    router = APIRouter(tags=["resource groups"])
    router.add_api_route(GROUPS, list_groups, methods=["GET"], response_model=None)
    router.add_api_route(GROUP, put_group, methods=["PUT"], response_model=None)
    router.add_api_route(GROUP, patch_group, methods=["PATCH"], response_model=None)
    router.add_api_route(GROUP, get_group, methods=["GET"], response_model=None)
    router.add_api_route(GROUP, group_exists, methods=["HEAD"], response_model=None)
    router.add_api_route(GROUP, delete_group, methods=["DELETE"], response_model=None)
    return router
