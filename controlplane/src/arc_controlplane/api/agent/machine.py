"""``GET /agent/v1/machines/{vmId}``: what the agent needs to know of its own machine resource."""

from __future__ import annotations

from fastapi import APIRouter, Request

from arc_controlplane.api.agent.schema import MachineView
from arc_controlplane.api.agent.services import AgentCtx, AgentServices, VmId, error_responses
from arc_controlplane.api.agent.snapshot import machine_query
from arc_controlplane.db.tables import Gateway, Machine
from arc_controlplane.machines import gateways
from arc_controlplane.machines.work import service_generations


def create_router(services: AgentServices) -> APIRouter:
    router = APIRouter()
    query = machine_query(
        Machine.tags,
        Machine.properties,
        Machine.gateway_id,
        Machine.extensions_generation,
        Machine.configuration_generation,
    )

    @router.get(
        "/machines/{vmId}",
        response_model=MachineView,
        summary="Read the machine's own resource",
        responses=error_responses(401),
    )
    def read_machine(vm_id: VmId, request: Request, ctx: AgentCtx) -> MachineView:
        """The machine's resource id, generation, tags and the work asked of it: ``agentUpgrade``
        and, with automatic upgrades, the version the rollout offers it now; its Arc gateway; which
        of its services the work is for (``serviceGenerations``)."""
        now = ctx.clock()
        with ctx.db.engine.connect() as connection:
            snapshot = services.authenticate(connection, request, ctx, vm_id, now, query)
            machine = snapshot.machine
        upgrade = machine.properties.get("agentUpgrade")
        offered, gateway = None, None
        if isinstance(upgrade, dict) and upgrade.get("enableAutomaticUpgrade") is True:
            with ctx.db.session() as session:
                offered = services.rollout.get(session, now, ctx.timing).offers.get(machine.vm_id)
        if machine.gateway_id is not None:
            with ctx.db.session() as session:
                gateway = gateways.agent_gateway(session.get(Gateway, machine.gateway_id), ctx.gateway_url)
        return MachineView(
            resource_id=machine.resource_id,
            vm_id=machine.vm_id,
            generation=machine.generation,
            tags=dict(machine.tags),
            agent_upgrade=upgrade if isinstance(upgrade, dict) else None,
            offered_agent_version=offered,
            gateway=gateway,
            service_generations=service_generations(
                machine.extensions_generation, machine.configuration_generation
            ),
        )

    return router
