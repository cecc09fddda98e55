"""The extension routes of the agent API (docs/agent-protocol.md, 5.8; docs/extensions.md).

- ``PUT /machines/{vmId}/extensionCertificate``: the extension service's certificate; the
  protected settings of the machine's extensions are encrypted to it.
- ``GET /machines/{vmId}/extensions``: the goal state (every extension, with its sequence
  number, its state ``enabled`` or ``deleted`` and its protected settings encrypted).
- ``PUT /machines/{vmId}/extensions/{name}/status``: what the handler did with a sequence
  number; a terminal status of the current one ends the extension's operation.
- ``GET /extensionPackages/{publisher}/{type}/{version}`` and ``.../signature``: a published
  package and its signature; ``GET /packageSigningKey``: the key to check signatures with
  (machine assertion of any machine: the ``vmId`` claim names it).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request, Response
from fastapi.responses import FileResponse, PlainTextResponse
from sqlalchemy.orm import Session

from arc_controlplane.api.agent.schema import (
    ExtensionCertificateRequest,
    ExtensionCertificateResponse,
    ExtensionGoal,
    ExtensionGoalState,
    ExtensionStatusReport,
    PackageKeys,
)
from arc_controlplane.api.agent.services import AgentCtx, AgentServices, VmId, error_responses
from arc_controlplane.db.tables import ExtensionPackage, Machine
from arc_controlplane.endpoints import DOWNLOADS
from arc_controlplane.errors import ArmError
from arc_controlplane.http.context import AppContext
from arc_controlplane.http.operations import end_operation
from arc_controlplane.machines import catalog, protected_settings
from arc_controlplane.machines.extensions import (
    Report,
    apply_report,
    extension_not_found,
    find_extension,
    goal_state,
    list_extensions,
    orphan_protected_settings,
    still_waiting,
)
from arc_controlplane.resource_ids import EXTENSION_NAME

ExtensionName = Annotated[str, Path(alias="name", max_length=64, pattern=EXTENSION_NAME.pattern)]
PackagePart = Annotated[str, Path(max_length=256, pattern=catalog.NAME.pattern)]


def create_router(services: AgentServices) -> APIRouter:
    router = APIRouter()

    def machine_of(request: Request, ctx: AppContext, vm_id: str, session: Session) -> Machine:
        """The authenticated machine, as a row of ``session`` (locked for a change)."""
        return services.machine_row(session, request, ctx, vm_id, for_update=True)

    @router.put(
        "/machines/{vmId}/extensionCertificate",
        response_model=ExtensionCertificateResponse,
        summary="Register the extension service's certificate",
        responses=error_responses(400, 401),
    )
    def put_certificate(
        vm_id: VmId, body: ExtensionCertificateRequest, request: Request, ctx: AgentCtx
    ) -> ExtensionCertificateResponse:
        """Protected settings are encrypted to this certificate from now on."""
        try:
            certificate = protected_settings.load_extension_certificate(body.certificate)
        except protected_settings.CertificateError as exc:
            raise ArmError(
                400, "InvalidCertificate", f"The extension certificate is refused: {exc}."
            ) from None
        thumbprint = protected_settings.thumbprint(certificate)
        now = ctx.clock()
        with services.writing(ctx), ctx.db.session() as session:
            machine = machine_of(request, ctx, vm_id, session)
            if machine.extension_certificate_thumbprint != thumbprint:
                machine.extension_certificate_pem = body.certificate
                machine.extension_certificate_thumbprint = thumbprint
                for operation_id, error in orphan_protected_settings(session, machine, now):
                    end_operation(session, operation_id, now, error)
        return ExtensionCertificateResponse(thumbprint=thumbprint)

    @router.get(
        "/machines/{vmId}/extensions",
        response_model=ExtensionGoalState,
        summary="Read the machine's extension goal state",
        responses=error_responses(401),
    )
    def get_goal_state(vm_id: VmId, request: Request, ctx: AgentCtx) -> ExtensionGoalState:
        """Every extension of the machine, as its extension service must bring it about."""
        with ctx.db.session() as session:
            machine = services.machine_row(session, request, ctx, vm_id)
            goals = goal_state(
                session, machine, list_extensions(session, machine), ctx.url_for(DOWNLOADS, request)
            )
            return ExtensionGoalState(
                generation=machine.generation, extensions=[ExtensionGoal(**goal) for goal in goals]
            )

    @router.put(
        "/machines/{vmId}/extensions/{name}/status",
        status_code=204,
        response_class=Response,
        summary="Report what an extension's handler did",
        responses=error_responses(400, 401, 404),
    )
    def put_status(
        vm_id: VmId, name: ExtensionName, body: ExtensionStatusReport, request: Request, ctx: AgentCtx
    ) -> Response:
        """A terminal status (success, warning, error) of the current sequence number ends the
        extension's operation; others change its instance view only."""
        now = ctx.clock()
        with services.writing(ctx), ctx.db.session() as session:
            machine = machine_of(request, ctx, vm_id, session)
            extension = find_extension(session, machine, name, for_update=True)
            if extension is None:
                raise extension_not_found(machine, name)
            report = Report(
                sequence_number=body.sequence_number,
                status=body.status,
                code=body.code,
                message=body.message,
                type_handler_version=body.type_handler_version,
                time=now,
            )
            outcome = apply_report(session, machine, extension, report, now)
            if outcome.operation_id is not None:
                last = not still_waiting(session, machine, outcome.operation_id)
                end_operation(session, outcome.operation_id, now, outcome.error, last=last)
        return Response(status_code=204)

    def published(ctx: AppContext, publisher: str, type_: str, version: str) -> ExtensionPackage:
        with ctx.db.session() as session:
            package = catalog.find_package(session, publisher, type_, version)
            if package is None:
                raise ArmError(
                    404, "PackageNotFound", f"No package {publisher}.{type_} {version} is published."
                )
            session.expunge(package)
            return package

    @router.get(
        "/extensionPackages/{publisher}/{type}/{version}",
        response_class=FileResponse,
        summary="Download a published extension package",
        responses=error_responses(401, 404),
    )
    def get_package(
        publisher: PackagePart,
        type_: Annotated[str, Path(alias="type", max_length=256)],
        version: PackagePart,
        request: Request,
        ctx: AgentCtx,
    ) -> FileResponse:
        """The package's zip; check its SHA-256 and signature before using it."""
        services.authenticate_any(request, ctx)
        package = published(ctx, publisher, type_, version)
        path = catalog.package_file(ctx.settings.packages_dir, package)
        return FileResponse(path, media_type="application/zip", headers={"X-Content-SHA256": package.sha256})

    @router.get(
        "/extensionPackages/{publisher}/{type}/{version}/signature",
        response_class=PlainTextResponse,
        summary="The signature of a published extension package",
        responses=error_responses(401, 404),
    )
    def get_signature(
        publisher: PackagePart,
        type_: Annotated[str, Path(alias="type", max_length=256)],
        version: PackagePart,
        request: Request,
        ctx: AgentCtx,
    ) -> PlainTextResponse:
        """A JWS (ES256) over publisher, type, version, sha256 and size."""
        services.authenticate_any(request, ctx)
        return PlainTextResponse(published(ctx, publisher, type_, version).signature)

    @router.get(
        "/packageSigningKey",
        response_model=PackageKeys,
        summary="The key extension packages are signed with",
        responses=error_responses(401),
    )
    def get_signing_key(request: Request, ctx: AgentCtx) -> PackageKeys:
        services.authenticate_any(request, ctx)
        if ctx.package_key is None:
            raise ArmError(503, "ServiceUnavailable", "This server has no package-signing key.")
        return PackageKeys(keys=[ctx.package_key.jwk()])

    return router
