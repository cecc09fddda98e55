"""``POST /agent/v1/machines/{vmId}/heartbeat``: the agent is alive, with what changed.

The hot path of the control plane (every agent, every 5 minutes): one assertion check against a
cached key, one SELECT of the columns needed (``properties`` only when something is reported)
and one UPDATE of what changed, in one transaction (``snapshot.py``); no audit entry
(heartbeats are not changes made by a principal).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from fastapi import APIRouter, Request

from arc_controlplane.agentapi.clones import is_clone, machine_cloned, mark_cloned
from arc_controlplane.agentapi.models import HeartbeatRequest, HeartbeatResponse
from arc_controlplane.agentapi.services import (
    HEARTBEAT_INTERVAL_SECONDS,
    AgentCtx,
    AgentServices,
    VmId,
    error_responses,
)
from arc_controlplane.agentapi.snapshot import machine_query
from arc_controlplane.db.models import Machine
from arc_controlplane.machines.status import RENEW_WHEN_LEFT, machine_status


def apply_heartbeat(machine: Machine, body: HeartbeatRequest, now: dt.datetime) -> None:
    """Record a heartbeat from the machine's own host; touch ``properties`` only if they change
    (they must be loaded when the heartbeat reports changes or service statuses)."""
    before = machine_status(machine, now)
    machine.last_heartbeat = now
    if machine.agent_version != body.agent_version:
        machine.agent_version = body.agent_version
        machine.updated_at = now
    changes: dict[str, Any] = body.changes.arm_changes() if body.changes is not None else {}
    if body.service_statuses is not None:
        changes["serviceStatuses"] = body.service_statuses.model_dump(
            mode="json", by_alias=True, exclude_none=True
        )
    if changes:
        merged = dict(machine.properties)
        for key, value in changes.items():
            if value is None:
                merged.pop(key, None)
            else:
                merged[key] = value
        if merged != machine.properties:
            machine.properties = merged
            machine.updated_at = now
    errors = [error.model_dump(mode="json", by_alias=True, exclude_none=True) for error in body.error_details]
    if errors != machine.error_details:
        machine.error_details = errors
    after = machine_status(machine, now)
    if (after.status, after.status_reason) != (before.status, before.status_reason):
        machine.last_status_change = now


def renewal_due(machine: Machine, now: dt.datetime) -> bool:
    expires = machine.credential_not_after
    return expires is not None and expires - now <= RENEW_WHEN_LEFT


def create_router(services: AgentServices) -> APIRouter:
    router = APIRouter()
    plain = machine_query(for_update=True)
    with_properties = machine_query(Machine.properties, for_update=True)

    @router.post(
        "/machines/{vmId}/heartbeat",
        response_model=HeartbeatResponse,
        summary="Heartbeat",
        responses=error_responses(400, 401, 413, 429),
    )
    def heartbeat(vm_id: VmId, body: HeartbeatRequest, request: Request, ctx: AgentCtx) -> HeartbeatResponse:
        """Record that the agent is alive; answers when to renew the credential and the generation."""
        now = ctx.clock()
        reported = body.changes is not None or body.service_statuses is not None
        with services.writing(ctx), ctx.db.engine.begin() as connection:
            query = with_properties if reported else plain
            snapshot = services.authenticate(connection, request, ctx, vm_id, now, query)
            machine = snapshot.machine
            cloned = is_clone(machine, body.host_id)
            if cloned:
                mark_cloned(machine, now)
            else:
                apply_heartbeat(machine, body, now)
            snapshot.save(connection, services.update)
        if cloned:  # raised after the commit, so that the Cloned mark is kept
            raise machine_cloned(machine)
        return HeartbeatResponse(
            heartbeat_interval_seconds=HEARTBEAT_INTERVAL_SECONDS,
            renew_credential=renewal_due(machine, now),
            generation=machine.generation,
        )

    return router
