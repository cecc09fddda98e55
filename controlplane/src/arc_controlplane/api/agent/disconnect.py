"""``DELETE /agent/v1/machines/{vmId}``: ``azcmagent disconnect`` with an operator's token.

Deletes the machine resource and its system-assigned identity. The caller needs
``Microsoft.HybridCompute/machines/delete`` on the machine (Resource Administrator or Owner;
the Onboarding role may connect machines but not disconnect them, as in Azure).
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from sqlalchemy import select

from arc_controlplane.api.agent.assertions import canonical_vm_id
from arc_controlplane.api.agent.schema import DisconnectResponse
from arc_controlplane.api.agent.services import VmId, error_responses
from arc_controlplane.auth.roles import MACHINES_DELETE
from arc_controlplane.db.tables import Machine
from arc_controlplane.errors import ArmError
from arc_controlplane.http.audit import audit
from arc_controlplane.http.caller import AuthenticatedCaller
from arc_controlplane.http.context import Ctx
from arc_controlplane.machines.lifecycle import delete_machine


def create_router() -> APIRouter:
    router = APIRouter()

    @router.delete(
        "/machines/{vmId}",
        response_model=DisconnectResponse,
        summary="Disconnect (delete) a machine",
        responses=error_responses(401, 403, 404),
    )
    def disconnect(
        vm_id: VmId, request: Request, ctx: Ctx, caller: AuthenticatedCaller
    ) -> DisconnectResponse:
        """Delete the machine and its managed identity."""
        audit(request, MACHINES_DELETE, f"vmId {vm_id[:64]}")
        canonical = canonical_vm_id(vm_id)
        with ctx.db.session() as session:
            machine = (
                session.scalars(select(Machine).where(Machine.vm_id == canonical)).first()
                if canonical is not None
                else None
            )
            if machine is None:
                raise ArmError(
                    404, "ResourceNotFound", f"No machine with vmId '{vm_id[:64]}' exists (already deleted?)."
                )
            resource_id = machine.resource_id
            audit(request, MACHINES_DELETE, resource_id)
            caller.require(MACHINES_DELETE, resource_id)
            delete_machine(session, machine)
        ctx.notifier.notify(machine.vm_id)
        return DisconnectResponse(resource_id=resource_id)

    return router
