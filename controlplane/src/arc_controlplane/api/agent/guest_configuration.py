"""The machine configuration routes of the agent API (docs/agent-protocol.md, 5.10;
docs/machine-configuration.md).

- ``GET /machines/{vmId}/guestConfigurationAssignments``: what the machine must evaluate (each
  assignment with its hash, configuration and package), with the machine's generation;
- ``POST /machines/{vmId}/guestConfigurationAssignments/{name}/reports``: one evaluation; a
  report sent again (the same ``reportId``) is kept once, so an agent resends freely what it
  could not deliver while offline;
- ``GET /configurationPackages/{name}/{version}/{name}.zip``: a published package (any
  machine's assertion); the agent checks its SHA-256 and signature before using it.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request
from fastapi.responses import FileResponse

from arc_controlplane.api.agent.schema import (
    GuestConfigurationAssignmentGoal,
    GuestConfigurationGoalState,
    GuestConfigurationReportAnswer,
    GuestConfigurationReportBody,
)
from arc_controlplane.api.agent.services import AgentCtx, AgentServices, VmId, error_responses
from arc_controlplane.endpoints import GUEST_CONFIGURATION
from arc_controlplane.errors import ArmError
from arc_controlplane.machines import configuration_packages
from arc_controlplane.machines import guest_configuration as gc
from arc_controlplane.machines.catalog import NAME, VERSION
from arc_controlplane.resource_ids import ASSIGNMENT_NAME

AssignmentName = Annotated[str, Path(alias="name", max_length=256, pattern=ASSIGNMENT_NAME.pattern)]
PackageName = Annotated[str, Path(max_length=256, pattern=NAME.pattern)]
PackageVersion = Annotated[str, Path(max_length=64, pattern=VERSION.pattern)]
PackageFile = Annotated[str, Path(max_length=262, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,255}\.zip$")]


def create_router(services: AgentServices) -> APIRouter:
    router = APIRouter()

    @router.get(
        "/machines/{vmId}/guestConfigurationAssignments",
        response_model=GuestConfigurationGoalState,
        summary="Read the machine's guest configuration assignments",
        responses=error_responses(401),
    )
    def get_assignments(vm_id: VmId, request: Request, ctx: AgentCtx) -> GuestConfigurationGoalState:
        """Every assignment of the machine, with the package to evaluate."""
        with ctx.db.session() as session:
            machine = services.machine_row(session, request, ctx, vm_id)
            goals = [
                GuestConfigurationAssignmentGoal(
                    **gc.agent_assignment(session, row, ctx.url_for(GUEST_CONFIGURATION, request))
                )
                for row in gc.list_assignments(session, machine)
            ]
            return GuestConfigurationGoalState(generation=machine.generation, assignments=goals)

    @router.post(
        "/machines/{vmId}/guestConfigurationAssignments/{name}/reports",
        response_model=GuestConfigurationReportAnswer,
        summary="Report an evaluation of an assignment",
        responses=error_responses(400, 401, 404, 409),
    )
    def post_report(
        vm_id: VmId, name: AssignmentName, body: GuestConfigurationReportBody, request: Request, ctx: AgentCtx
    ) -> GuestConfigurationReportAnswer:
        """404 when the machine has no such assignment (any more): the agent stops evaluating it."""
        if body.end_time < body.start_time:
            raise ArmError(400, "InvalidReport", "The report's endTime is before its startTime.")
        report = gc.Report(
            report_id=body.report_id,
            assignment_hash=body.assignment_hash.upper(),
            compliance_status=body.compliance_status,
            operation_type=body.operation_type,
            job_id=body.job_id,
            configuration_version=body.configuration_version,
            start_time=body.start_time,
            end_time=body.end_time,
            resources=[r.model_dump(by_alias=True) for r in body.resources],
        )
        with services.writing(ctx), ctx.db.session() as session:
            machine = services.machine_row(session, request, ctx, vm_id)
            assignment = gc.find_assignment(session, machine, name, for_update=True)
            if assignment is None:
                raise gc.not_found(machine, name)
            recorded = gc.record_report(session, assignment, report, ctx.clock())
        return GuestConfigurationReportAnswer(recorded=recorded.recorded, current=recorded.current)

    @router.get(
        "/configurationPackages/{name}/{version}/{file}",
        response_class=FileResponse,
        summary="Download a published machine configuration package",
        responses=error_responses(401, 404),
    )
    def get_package(
        name: PackageName, version: PackageVersion, file: PackageFile, request: Request, ctx: AgentCtx
    ) -> FileResponse:
        """The package (a zip), as the assignment's ``contentUri`` names it."""
        services.authenticate_any(request, ctx)
        with ctx.db.session() as session:
            row = configuration_packages.find(session, name, version)
            if row is None or file.lower() != f"{row.name}.zip".lower():
                raise ArmError(
                    404, "ConfigurationPackageNotFound", f"{name} {version} is not published ({file[:64]})."
                )
            path = configuration_packages.package_file(ctx.settings.packages_dir, row)
            sha256 = row.sha256
        return FileResponse(path, media_type="application/zip", headers={"X-Content-SHA256": sha256})

    return router
