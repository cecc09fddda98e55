"""Guest configuration assignments on machines (``Microsoft.GuestConfiguration``): PUT, GET,
DELETE, the lists by machine, resource group and subscription, and the reports
(docs/machine-configuration.md). The operations are those of ``azure-mgmt-guestconfig``'s
``guest_configuration_hcrp_assignments``, ``guest_configuration_assignments.rg_list`` /
``subscription_list`` and ``guest_configuration_hcrp_assignment_reports``: synchronous, as in
Azure (PUT answers 201 or 200 with the assignment, DELETE 200 or 204).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response
from sqlalchemy import select

from arc_controlplane import endpoints
from arc_controlplane.api.management.access import (
    Access,
    AssignmentChecks,
    AssignmentRef,
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
from arc_controlplane.api.management.schema import GuestConfigurationAssignmentBody
from arc_controlplane.db.tables import GuestConfigurationAssignment, Machine
from arc_controlplane.errors import ArmError
from arc_controlplane.http.audit import set_audit_detail
from arc_controlplane.http.content import require_json_content
from arc_controlplane.http.context import Ctx
from arc_controlplane.http.responses import JsonResponse
from arc_controlplane.http.versions import GUEST_CONFIGURATION
from arc_controlplane.machines import guest_configuration as gc
from arc_controlplane.machines import protected_settings

ASSIGNMENTS = MACHINE + "/providers/Microsoft.GuestConfiguration/guestConfigurationAssignments"
ASSIGNMENT = ASSIGNMENTS + "/{guest_configuration_assignment_name}"
REPORTS = ASSIGNMENT + "/reports"
REPORT = REPORTS + "/{report_id}"
GROUP_ASSIGNMENTS = (
    "/subscriptions/{subscription_id}/resourceGroups/{resource_group_name}"
    "/providers/Microsoft.GuestConfiguration/guestConfigurationAssignments"
)
SUBSCRIPTION_ASSIGNMENTS = (
    "/subscriptions/{subscription_id}/providers/Microsoft.GuestConfiguration/guestConfigurationAssignments"
)

READ = "Microsoft.GuestConfiguration/guestConfigurationAssignments/read"
WRITE = "Microsoft.GuestConfiguration/guestConfigurationAssignments/write"
DELETE = "Microsoft.GuestConfiguration/guestConfigurationAssignments/delete"
REPORTS_READ = "Microsoft.GuestConfiguration/guestConfigurationAssignments/reports/read"

AssignmentRead = Annotated[Access[AssignmentRef], Depends(AssignmentChecks(GUEST_CONFIGURATION, READ))]
AssignmentWrite = Annotated[
    Access[AssignmentRef], Depends(AssignmentChecks(GUEST_CONFIGURATION, WRITE, change=True))
]
AssignmentDelete = Annotated[
    Access[AssignmentRef], Depends(AssignmentChecks(GUEST_CONFIGURATION, DELETE, change=True))
]
ReportsRead = Annotated[Access[AssignmentRef], Depends(AssignmentChecks(GUEST_CONFIGURATION, REPORTS_READ))]
MachineAssignments = Annotated[Access[MachineRef], Depends(MachineChecks(GUEST_CONFIGURATION, READ))]
GroupAssignments = Annotated[Access[GroupRef], Depends(GroupChecks(GUEST_CONFIGURATION, None))]
SubscriptionAssignments = Annotated[
    Access[SubscriptionRef], Depends(SubscriptionChecks(GUEST_CONFIGURATION, None))
]


def _request(body: GuestConfigurationAssignmentBody) -> gc.AssignmentRequest:
    navigation = body.properties.guest_configuration
    if navigation is None:
        raise ArmError(
            400,
            "InvalidGuestConfiguration",
            "properties.guestConfiguration is required: the package (name, version) and the assignmentType.",
        )
    if navigation.kind is not None and navigation.kind != "DSC":
        raise ArmError(400, "InvalidGuestConfiguration", "properties.guestConfiguration.kind must be DSC.")
    return gc.AssignmentRequest(
        name=navigation.name,
        version=navigation.version,
        content_uri=navigation.content_uri,
        content_hash=navigation.content_hash,
        assignment_type=navigation.assignment_type,
        parameters=[(p.name, p.value) for p in navigation.configuration_parameter or []],
        context=body.properties.context,
        protected=[(p.name, p.value) for p in navigation.configuration_protected_parameter or []],
    )


def get_assignment(granted: AssignmentRead, ctx: Ctx) -> JsonResponse:
    """GuestConfigurationHCRPAssignments_Get."""
    ref = granted.ref
    with ctx.db.session() as session:
        machine = require_machine(session, granted.subscription.id, ref.resource_group, ref.machine)
        assignment = gc.find_assignment(session, machine, ref.name)
        if assignment is None:
            raise gc.not_found(machine, ref.name)
        return JsonResponse(gc.assignment_view(machine, assignment, gc.latest_report(session, assignment)))


def put_assignment(
    request: Request,
    granted: AssignmentWrite,
    _json: Annotated[None, Depends(require_json_content)],
    body: GuestConfigurationAssignmentBody,
    ctx: Ctx,
) -> JsonResponse:
    """GuestConfigurationHCRPAssignments_CreateOrUpdate: 201 created, 200 replaced."""
    ref, wanted = granted.ref, _request(body)
    key = protected_settings.digest_key(ctx.tokens.key.private_key) if wanted.protected else b""
    with ctx.writes.hold(ref.machine_ref.id), ctx.db.session() as session:
        machine = require_machine(
            session, granted.subscription.id, ref.resource_group, ref.machine, for_update=True
        )
        put = gc.put_assignment(
            session,
            machine,
            ref.name,
            wanted,
            ctx.url_for(endpoints.GUEST_CONFIGURATION, request),
            ctx.clock(),
            digest_key=key,
        )
        session.flush()
        view = gc.assignment_view(machine, put.assignment, gc.latest_report(session, put.assignment))
        vm = machine.vm_id
    if put.changed:
        ctx.notifier.notify(vm)
    set_audit_detail(request, "created" if put.created else ("changed" if put.changed else "no change"))
    return JsonResponse(view, status_code=201 if put.created else 200)


def delete_assignment(request: Request, granted: AssignmentDelete, ctx: Ctx) -> Response:
    """GuestConfigurationHCRPAssignments_Delete: 200 removed, 204 when there is none."""
    ref = granted.ref
    with ctx.writes.hold(ref.machine_ref.id), ctx.db.session() as session:
        machine = require_machine(
            session, granted.subscription.id, ref.resource_group, ref.machine, for_update=True
        )
        assignment = gc.find_assignment(session, machine, ref.name, for_update=True)
        if assignment is None:
            set_audit_detail(request, "no such assignment")
            return Response(status_code=204)
        gc.delete_assignment(session, machine, assignment)
        vm = machine.vm_id
    ctx.notifier.notify(vm)
    set_audit_detail(request, "removed")
    return Response(status_code=200)


def _views(session: Any, rows: list[tuple[GuestConfigurationAssignment, Machine]]) -> list[dict[str, Any]]:
    return [gc.assignment_view(machine, row, gc.latest_report(session, row)) for row, machine in rows]


def list_machine_assignments(granted: MachineAssignments, ctx: Ctx) -> JsonResponse:
    """GuestConfigurationHCRPAssignments_List."""
    ref = granted.ref
    with ctx.db.session() as session:
        machine = require_machine(session, granted.subscription.id, ref.resource_group, ref.name)
        rows = [(row, machine) for row in gc.list_assignments(session, machine)]
        return JsonResponse({"value": _views(session, rows)})


def _visible(ctx: Ctx, subscription_id: str, seen: Visibility, group: str | None) -> list[dict[str, Any]]:
    with ctx.db.session() as session:
        if group is not None:
            require_group(session, subscription_id, group)
        if seen.empty:
            return []
        query = (
            select(GuestConfigurationAssignment, Machine)
            .join(Machine, Machine.id == GuestConfigurationAssignment.machine_id)
            .where(Machine.subscription_id == subscription_id, seen.machine_filter())
        )
        if group is not None:
            query = query.where(Machine.resource_group_lower == group.lower())
        rows = [
            (row, machine)
            for row, machine in session.execute(query.order_by(GuestConfigurationAssignment.id))
        ]
        return _views(session, rows)


def list_group_assignments(granted: GroupAssignments, ctx: Ctx) -> JsonResponse:
    """GuestConfigurationAssignments_RGList: the assignments of the group's machines the caller may read."""
    ref = granted.ref
    seen = visibility(granted.caller, READ, granted.subscription.id).within_group(ref.resource_group)
    return JsonResponse({"value": _visible(ctx, granted.subscription.id, seen, ref.resource_group)})


def list_subscription_assignments(granted: SubscriptionAssignments, ctx: Ctx) -> JsonResponse:
    """GuestConfigurationAssignments_SubscriptionList."""
    seen = visibility(granted.caller, READ, granted.subscription.id)
    return JsonResponse({"value": _visible(ctx, granted.subscription.id, seen, None)})


def list_reports(granted: ReportsRead, ctx: Ctx) -> JsonResponse:
    """GuestConfigurationHCRPAssignmentReports_List: newest first."""
    ref = granted.ref
    with ctx.db.session() as session:
        machine = require_machine(session, granted.subscription.id, ref.resource_group, ref.machine)
        assignment = gc.find_assignment(session, machine, ref.name)
        if assignment is None:
            raise gc.not_found(machine, ref.name)
        reports = gc.list_reports(session, assignment)
        return JsonResponse({"value": [gc.report_view(machine, assignment, r) for r in reports]})


def get_report(report_id: str, granted: ReportsRead, ctx: Ctx) -> JsonResponse:
    """GuestConfigurationHCRPAssignmentReports_Get."""
    ref = granted.ref
    with ctx.db.session() as session:
        machine = require_machine(session, granted.subscription.id, ref.resource_group, ref.machine)
        assignment = gc.find_assignment(session, machine, ref.name)
        if assignment is None:
            raise gc.not_found(machine, ref.name)
        report = next((r for r in gc.list_reports(session, assignment) if r.id == report_id.lower()), None)
        if report is None:
            raise ArmError(
                404, "ReportNotFound", f"The report '{report_id[:64]}' of '{assignment.name}' was not found."
            )
        return JsonResponse(gc.report_view(machine, assignment, report))


def create_router() -> APIRouter:
    router = APIRouter(tags=["guest configuration"])
    router.add_api_route(ASSIGNMENTS, list_machine_assignments, methods=["GET"], response_model=None)
    router.add_api_route(ASSIGNMENT, get_assignment, methods=["GET"], response_model=None)
    router.add_api_route(ASSIGNMENT, put_assignment, methods=["PUT"], response_model=None)
    router.add_api_route(ASSIGNMENT, delete_assignment, methods=["DELETE"], response_model=None)
    router.add_api_route(REPORTS, list_reports, methods=["GET"], response_model=None)
    router.add_api_route(REPORT, get_report, methods=["GET"], response_model=None)
    router.add_api_route(GROUP_ASSIGNMENTS, list_group_assignments, methods=["GET"], response_model=None)
    router.add_api_route(
        SUBSCRIPTION_ASSIGNMENTS, list_subscription_assignments, methods=["GET"], response_model=None
    )
    return router
