"""``POST /agent/v1/machines/{vmId}/credential``: renew the machine's credential.

Authenticated by an assertion signed with the current key; answers a new 90-day certificate,
over a new key when one is given (key rotation: the old key is refused from then on). Not a
way back from ``Expired``: an expired credential is refused like any other call.
"""

from __future__ import annotations

from fastapi import APIRouter, Request

from arc_controlplane.api.agent.clones import is_clone, machine_cloned, mark_cloned
from arc_controlplane.api.agent.schema import Credential, RenewCredentialRequest, RenewCredentialResponse
from arc_controlplane.api.agent.services import AgentCtx, AgentServices, VmId, error_responses, iso_utc
from arc_controlplane.api.agent.snapshot import machine_query
from arc_controlplane.errors import ArmError
from arc_controlplane.http.audit import audit, set_audit_detail
from arc_controlplane.machines.credentials import (
    InvalidPublicKey,
    MachineCredential,
    issue_credential,
    load_public_key,
    public_key_pem,
)

RENEW_ACTION = "Microsoft.HybridCompute/machines/renewCredential/action"


def create_router(services: AgentServices) -> APIRouter:
    router = APIRouter()
    locked = machine_query(for_update=True)

    @router.post(
        "/machines/{vmId}/credential",
        response_model=RenewCredentialResponse,
        summary="Renew the machine credential",
        responses=error_responses(400, 401, 413, 429),
    )
    def renew_credential(
        vm_id: VmId, body: RenewCredentialRequest, request: Request, ctx: AgentCtx
    ) -> RenewCredentialResponse:
        """A new certificate valid 90 days, over ``publicKey`` if given, else the current key."""
        audit(request, RENEW_ACTION, f"vmId {vm_id[:64]}")
        try:
            new_key = load_public_key(body.public_key) if body.public_key is not None else None
        except InvalidPublicKey as exc:
            raise ArmError(400, "InvalidPublicKey", f"publicKey: {exc}.") from None
        ca = services.ca.get(ctx.settings.pki_dir)
        now = ctx.clock()
        credential: MachineCredential | None = None
        with services.writing(ctx), ctx.db.engine.begin() as connection:
            snapshot = services.authenticate(connection, request, ctx, vm_id, now, locked)
            machine = snapshot.machine
            audit(request, RENEW_ACTION, machine.resource_id)
            if is_clone(machine, body.host_id):
                mark_cloned(machine, now, ctx.timing)
            else:
                assert machine.public_key_pem is not None  # authenticate() checked it
                key = new_key or load_public_key(machine.public_key_pem)
                credential = issue_credential(ca, key, machine.vm_id, now)
                machine.public_key_pem = public_key_pem(key)
                machine.credential_not_after = credential.not_after
                machine.updated_at = now
            snapshot.save(connection, services.update)
        if credential is None:  # raised after the commit, so that the Cloned mark is kept
            raise machine_cloned(machine, str(ctx.timing.heartbeat_interval_seconds))
        set_audit_detail(request, "new key" if new_key is not None else "same key")
        return RenewCredentialResponse(
            credential=Credential(
                certificate=credential.certificate_pem, not_after=iso_utc(credential.not_after)
            )
        )

    return router
