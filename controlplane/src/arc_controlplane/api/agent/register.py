"""``POST /agent/v1/register``: ``azcmagent connect``, with an onboarding principal's token."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from arc_controlplane.api.agent.schema import Credential, RegisterRequest, RegisterResponse
from arc_controlplane.api.agent.services import AgentServices, agent_audience, error_responses, iso_utc
from arc_controlplane.auth.roles import MACHINES_WRITE
from arc_controlplane.db.tables import ResourceGroup, Subscription
from arc_controlplane.errors import ArmError
from arc_controlplane.http.audit import audit, set_audit_detail
from arc_controlplane.http.caller import AuthenticatedCaller
from arc_controlplane.http.context import AppContext, Ctx
from arc_controlplane.http.errors import not_found
from arc_controlplane.machines.credentials import InvalidPublicKey, load_public_key
from arc_controlplane.machines.registration import (
    Registered,
    Registration,
    RegistrationKind,
    register_machine,
)
from arc_controlplane.resource_ids import (
    check_machine_name,
    check_resource_group_name,
    check_subscription_id,
    machine_id,
    resource_group_id,
)


def find_group(session: Session, subscription_id: str, group_name: str, tenant_id: str) -> ResourceGroup:
    """The resource group to register in; 404 when it or its subscription is missing, 403 when
    the subscription belongs to another tenant."""
    subscription = session.get(Subscription, subscription_id)
    if subscription is None:
        raise ArmError(
            404, "SubscriptionNotFound", f"The subscription '{subscription_id}' could not be found."
        )
    if subscription.tenant_id != tenant_id:
        raise ArmError(
            403,
            "InvalidAuthenticationTokenTenant",
            f"The subscription '{subscription_id}' belongs to another tenant than '{tenant_id}'; use a "
            f"token and tenantId of tenant '{subscription.tenant_id}'.",
        )
    group = session.scalars(
        select(ResourceGroup).where(
            ResourceGroup.subscription_id == subscription_id,
            ResourceGroup.name_lower == group_name.lower(),
        )
    ).first()
    if group is None:
        raise not_found("resourceGroup", resource_group_id(subscription_id, group_name))
    return group


def registration_answer(registered: Registered, ctx: AppContext) -> RegisterResponse:
    machine = registered.machine
    assert machine.principal_id is not None  # register_machine() gives every machine an identity
    return RegisterResponse(
        resource_id=machine.resource_id,
        vm_id=machine.vm_id,
        tenant_id=machine.tenant_id,
        principal_id=machine.principal_id,
        location=machine.location,
        generation=machine.generation,
        credential=Credential(
            certificate=registered.credential.certificate_pem,
            not_after=iso_utc(registered.credential.not_after),
        ),
        heartbeat_interval_seconds=ctx.timing.heartbeat_interval_seconds,
        assertion_audience=agent_audience(ctx),
    )


def create_router(services: AgentServices) -> APIRouter:
    router = APIRouter()

    @router.post(
        "/register",
        status_code=201,
        response_model=RegisterResponse,
        summary="Register (connect) a machine",
        responses={
            200: {"model": RegisterResponse, "description": "An existing machine taken over or re-onboarded"},
            **error_responses(400, 401, 403, 404, 409, 413),
        },
    )
    def register(
        body: RegisterRequest, request: Request, response: Response, ctx: Ctx, caller: AuthenticatedCaller
    ) -> RegisterResponse:
        """Create the machine (201), or take over / re-onboard an existing one (200)."""
        subscription_id = check_subscription_id(body.subscription_id)
        group_name = check_resource_group_name(body.resource_group)
        name = check_machine_name(body.resource_name)
        target = machine_id(subscription_id, group_name, name)
        audit(request, MACHINES_WRITE, target)
        if body.tenant_id != caller.tenant_id:
            raise ArmError(
                400,
                "TenantMismatch",
                f"tenantId '{body.tenant_id}' is not the tenant of the access token ('{caller.tenant_id}').",
            )
        caller.require(MACHINES_WRITE, target)
        try:
            key = load_public_key(body.public_key)
        except InvalidPublicKey as exc:
            raise ArmError(400, "InvalidPublicKey", f"publicKey: {exc}.") from None
        ca = services.ca.get(ctx.settings.pki_dir)
        now = ctx.clock()
        try:
            with services.writing(ctx), ctx.db.session() as session:
                group = find_group(session, subscription_id, group_name, body.tenant_id)
                registration = Registration(
                    subscription_id=subscription_id,
                    tenant_id=body.tenant_id,
                    resource_group=group,
                    name=name,
                    location=body.location,
                    tags=body.tags,
                    public_key=key,
                    host_id=body.host_id,
                    agent_version=body.agent_version,
                    reported=body.properties.arm_properties(),
                    automatic_upgrade=body.enable_automatic_upgrade,
                )
                registered = register_machine(session, registration, ca, now, ctx.timing)
                answer = registration_answer(registered, ctx)
        except IntegrityError:
            raise ArmError(
                409,
                "Conflict",
                f"Another registration of '{name}' was running at the same time; try again.",
            ) from None
        audit(request, MACHINES_WRITE, answer.resource_id)
        correlation = f"; correlationId {body.correlation_id}" if body.correlation_id else ""
        set_audit_detail(request, f"{registered.kind.value}; vmId {answer.vm_id}{correlation}")
        if registered.kind is not RegistrationKind.CREATED:
            response.status_code = 200
        return answer

    return router
