"""Generic resources (Microsoft.Resources ``resources``): every resource of a subscription or a
resource group, whatever its provider, as ``az resource list`` and ``azure_rm_resource_info``
read them.

- ``GET /subscriptions/{id}/resources`` (Resources_List) and
  ``GET /subscriptions/{id}/resourceGroups/{rg}/resources`` (Resources_ListByResourceGroup);
- ``$filter`` as :mod:`.odata` parses it, ``$expand`` of ``createdTime``, ``changedTime`` and
  ``provisioningState``, ``$top`` (at most 100 a page) and ``$skiptoken`` paging;
- a caller sees the resources it may read (as in the typed lists), 403 when it may read none.

The resources here are machines (resource groups are not resources of a group).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from sqlalchemy import false, select

from arc_controlplane.api.management.access import (
    Access,
    GroupChecks,
    GroupRef,
    SubscriptionChecks,
    SubscriptionRef,
    visibility,
)
from arc_controlplane.api.management.lookups import require_group
from arc_controlplane.api.management.odata import Candidate, Predicate, parse_filter, required_equalities
from arc_controlplane.auth.roles import MACHINES_READ
from arc_controlplane.clock import iso8601
from arc_controlplane.db.tables import Machine
from arc_controlplane.endpoints import MANAGEMENT
from arc_controlplane.errors import ArmError
from arc_controlplane.http.context import Ctx
from arc_controlplane.http.paging import PAGE_SIZE, SkipTokenParameter, decode_skip_token, next_link
from arc_controlplane.http.responses import JsonResponse
from arc_controlplane.http.versions import RESOURCES
from arc_controlplane.machines.view import machine_envelope, machine_identity
from arc_controlplane.resource_ids import MACHINE_TYPE

EXPANDABLE = {
    "createdtime": "createdTime",
    "changedtime": "changedTime",
    "provisioningstate": "provisioningState",
}
SCAN_BATCH = 500

SubscriptionResources = Annotated[Access[SubscriptionRef], Depends(SubscriptionChecks(RESOURCES, None))]
GroupResources = Annotated[Access[GroupRef], Depends(GroupChecks(RESOURCES, None))]
FilterParameter = Annotated[str | None, Query(alias="$filter", description="See docs/management-api.md.")]


def check_expand(
    value: Annotated[
        str | None, Query(alias="$expand", description="createdTime,changedTime,provisioningState")
    ] = None,
) -> frozenset[str]:
    if value is None or not value.strip():
        return frozenset()
    wanted = {part.strip().lower() for part in value.split(",")}
    unknown = sorted(wanted - set(EXPANDABLE))
    if unknown:
        shown = unknown[0] if len(unknown[0]) <= 64 else unknown[0][:64] + "..."
        raise ArmError(
            400,
            "InvalidExpandQueryString",
            f"The $expand value '{shown}' is not supported: use createdTime, changedTime or "
            "provisioningState.",
        )
    return frozenset(EXPANDABLE[part] for part in wanted)


def check_top(value: Annotated[str | None, Query(alias="$top", description="At most 100.")] = None) -> int:
    if value is None:
        return PAGE_SIZE
    if not value.isdigit() or not 1 <= int(value) <= 1000:
        shown = value if len(value) <= 16 else value[:16] + "..."
        raise ArmError(
            400, "InvalidTopInQueryString", f"The $top value '{shown}' is not an integer from 1 to 1000."
        )
    return min(int(value), PAGE_SIZE)


Expand = Annotated[frozenset[str], Depends(check_expand)]
Top = Annotated[int, Depends(check_top)]


def resource_view(machine: Machine, expand: frozenset[str]) -> dict[str, Any]:
    """A machine as a GenericResourceExpanded."""
    view = machine_envelope(machine)
    if machine.kind:
        view["kind"] = machine.kind
    identity = machine_identity(machine)
    if identity is not None:
        view["identity"] = identity
    if "createdTime" in expand:
        view["createdTime"] = iso8601(machine.created_at)
    if "changedTime" in expand:
        view["changedTime"] = iso8601(machine.updated_at)
    if "provisioningState" in expand:
        view["provisioningState"] = machine.provisioning_state
    return view


def _candidate(machine: Machine) -> Candidate:
    group = machine.resource_id.split("/")[4]
    return Candidate(MACHINE_TYPE, machine.name, machine.location, group, machine.tags or {})


def list_resources(
    request: Request,
    granted: SubscriptionResources,
    ctx: Ctx,
    expand: Expand,
    top: Top,
    filter_text: FilterParameter = None,
    skiptoken: SkipTokenParameter = None,
) -> JsonResponse:
    """Resources_List."""
    matches = parse_filter(filter_text)
    seen = visibility(granted.caller, MACHINES_READ, granted.subscription.id)
    if seen.empty:
        granted.caller.require(MACHINES_READ, granted.ref.id)
    where = [
        Machine.subscription_id == granted.subscription.id,
        seen.machine_filter(),
        *_narrowing(filter_text),
    ]
    return JsonResponse(_page(request, ctx, where, matches, expand, top, skiptoken))


def list_group_resources(
    request: Request,
    granted: GroupResources,
    ctx: Ctx,
    expand: Expand,
    top: Top,
    filter_text: FilterParameter = None,
    skiptoken: SkipTokenParameter = None,
) -> JsonResponse:
    """Resources_ListByResourceGroup."""
    ref = granted.ref
    matches = parse_filter(filter_text)
    seen = visibility(granted.caller, MACHINES_READ, granted.subscription.id).within_group(ref.resource_group)
    if seen.empty:
        granted.caller.require(MACHINES_READ, ref.id)
    with ctx.db.session() as session:
        require_group(session, granted.subscription.id, ref.resource_group)
    where = [
        Machine.subscription_id == granted.subscription.id,
        Machine.resource_group_lower == ref.resource_group.lower(),
        seen.machine_filter(),
        *_narrowing(filter_text),
    ]
    return JsonResponse(_page(request, ctx, where, matches, expand, top, skiptoken))


def _narrowing(filter_text: str | None) -> list[Any]:
    """The filter's required equalities as conditions of the query (the predicate still decides)."""
    conditions: list[Any] = []
    for attribute, value in required_equalities(filter_text):
        if attribute == "name":
            conditions.append(Machine.name_lower == value.lower())
        elif attribute == "resource_group":
            conditions.append(Machine.resource_group_lower == value.lower())
        elif value.lower() != MACHINE_TYPE.lower():  # the only type listed here
            conditions.append(false())
    return conditions


def _page(
    request: Request,
    ctx: Ctx,
    where: list[Any],
    matches: Predicate,
    expand: frozenset[str],
    top: int,
    skiptoken: str | None,
) -> dict[str, Any]:
    """One page of the machines that pass ``matches``, read in batches in key order."""
    after = decode_skip_token(skiptoken)
    found: list[dict[str, Any]] = []
    last_key, more = after, False
    with ctx.db.session() as session:
        while not more:
            query = select(Machine).where(*where).order_by(Machine.id).limit(SCAN_BATCH)
            if last_key is not None:
                query = query.where(Machine.id > last_key)
            batch = list(session.scalars(query))
            for machine in batch:
                if not matches(_candidate(machine)):
                    last_key = machine.id
                    continue
                if len(found) == top:
                    more = True
                    break
                found.append(resource_view(machine, expand))
                last_key = machine.id
            if len(batch) < SCAN_BATCH:
                break
    body: dict[str, Any] = {"value": found}
    if more and last_key is not None:
        body["nextLink"] = next_link(
            ctx.url_for(MANAGEMENT, request), request.url.path, request.query_params, last_key
        )
    return body


def create_router() -> APIRouter:
    router = APIRouter(tags=["resources"])
    router.add_api_route(
        "/subscriptions/{subscription_id}/resources", list_resources, methods=["GET"], response_model=None
    )
    router.add_api_route(
        "/subscriptions/{subscription_id}/resourceGroups/{resource_group_name}/resources",
        list_group_resources,
        methods=["GET"],
        response_model=None,
    )
    return router
