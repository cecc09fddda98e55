"""``POST /agent/v1/machines/{vmId}/heartbeat``: the agent is alive, with what changed.

The hot path of the control plane (every agent, every 5 minutes). Well-formed heartbeats are
taken before the framework (``fastpath.py``), and every heartbeat goes to the application's
heartbeat writer (``db/batching.py``), which writes those that arrive together in one
transaction: per heartbeat, one assertion check against a cached key, one SELECT of the
columns needed (``properties`` only when something is reported) and one UPDATE of what changed
(``snapshot.py``). No audit entry (heartbeats are not changes made by a principal).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Request
from sqlalchemy import Connection

from arc_controlplane.api.agent.assertions import assertion_of, canonical_vm_id
from arc_controlplane.api.agent.clones import is_clone, machine_cloned, mark_cloned
from arc_controlplane.api.agent.schema import HeartbeatRequest, HeartbeatResponse
from arc_controlplane.api.agent.services import AgentServices, VmId, error_responses
from arc_controlplane.api.agent.snapshot import MachineSnapshot, machines_query
from arc_controlplane.db.batching import BatchedWrites
from arc_controlplane.db.tables import Machine
from arc_controlplane.errors import ArmError
from arc_controlplane.machines import agent_packages
from arc_controlplane.machines.lifecycle import changed_properties
from arc_controlplane.machines.status import RENEW_WHEN_LEFT, machine_status
from arc_controlplane.timing import Timing

POSTGRESQL_WRITER_THREADS = 4
"""PostgreSQL takes concurrent writers (row locks); SQLite one, so it gets one thread."""


def apply_heartbeat(machine: Machine, body: HeartbeatRequest, now: dt.datetime, timing: Timing) -> None:
    """Record a heartbeat from the machine's own host; touch ``properties`` only if they change
    (they must be loaded when the heartbeat reports changes or service statuses)."""
    before = machine_status(machine, now, timing)
    machine.last_heartbeat = now
    if machine.agent_version != body.agent_version:
        machine.agent_version = body.agent_version
        machine.updated_at = now
    changes: dict[str, Any] = body.changes.arm_changes() if body.changes is not None else {}
    if body.service_statuses is not None:
        changes["serviceStatuses"] = body.service_statuses.model_dump(
            mode="json", by_alias=True, exclude_none=True
        )
    if body.agent_upgrade is not None:
        # merged: the agent's lastAttempt* beside what the operator asked of it (desiredVersion...)
        changes["agentUpgrade"] = body.agent_upgrade.model_dump(mode="json", by_alias=True, exclude_none=True)
    if changes:
        merged = changed_properties(machine.properties, changes)
        if merged != machine.properties:
            machine.properties = merged
            machine.updated_at = now
    errors = [error.model_dump(mode="json", by_alias=True, exclude_none=True) for error in body.error_details]
    if errors != machine.error_details:
        machine.error_details = errors
    after = machine_status(machine, now, timing)
    if (after.status, after.status_reason) != (before.status, before.status_reason):
        machine.last_status_change = now


def failed_upgrade(machine: Machine, body: HeartbeatRequest) -> list[tuple[str, str]]:
    """A failed upgrade attempt the heartbeat reports: its version halts automatic upgrades to it
    (docs/agent-upgrade.md, "Automatic upgrades")."""
    report = body.agent_upgrade
    if report is None or report.last_attempt_status != "Failed" or not report.last_attempt_desired_version:
        return []
    said = report.last_attempt_message or "no message"
    return [(report.last_attempt_desired_version, f"{machine.name} failed to upgrade to it: {said}")]


def reports(body: HeartbeatRequest) -> bool:
    """Whether the heartbeat reports something that lives in ``properties``."""
    return body.changes is not None or body.service_statuses is not None or body.agent_upgrade is not None


def renewal_due(machine: Machine, now: dt.datetime) -> bool:
    expires = machine.credential_not_after
    return expires is not None and expires - now <= RENEW_WHEN_LEFT


@dataclass(frozen=True)
class Heartbeat:
    vm_id: str
    """As in the request's path (not checked yet)."""
    assertion: str
    body: HeartbeatRequest
    received: dt.datetime


@dataclass(frozen=True)
class Recorded:
    machine: Machine
    cloned: bool


class Heartbeats:
    """Answers heartbeats, for the framework's route and for the fast path alike."""

    def __init__(self, services: AgentServices) -> None:
        ctx = services.ctx
        self._clock = ctx.clock
        timing = ctx.timing
        # Read once: every answer carries the interval, every 429 it as Retry-After.
        self._interval_seconds = timing.heartbeat_interval_seconds
        self._retry_after = str(self._interval_seconds)
        plain = machines_query(for_update=True)
        with_properties = machines_query(Machine.properties, for_update=True)

        def record(connection: Connection, heartbeats: list[Heartbeat]) -> list[Recorded | ArmError]:
            """Record ``heartbeats``: one SELECT for all, then one UPDATE per set of changes."""
            reported = any(reports(heartbeat.body) for heartbeat in heartbeats)
            vm_ids = [canonical_vm_id(heartbeat.vm_id) for heartbeat in heartbeats]
            snapshots = MachineSnapshot.load_many(
                connection, with_properties if reported else plain, sorted({v for v in vm_ids if v})
            )
            results: list[Recorded | ArmError] = []
            failed_upgrades: list[tuple[str, str]] = []
            for heartbeat, vm_id in zip(heartbeats, vm_ids, strict=True):
                try:
                    snapshot = services.check_assertion(
                        snapshots.get(vm_id) if vm_id else None,
                        heartbeat.assertion,
                        ctx,
                        vm_id or heartbeat.vm_id,
                        heartbeat.received,
                    )
                except ArmError as refused:  # a result, not an exception: the batch goes on
                    results.append(refused)
                    continue
                # Two heartbeats of one machine in a batch (a clone and its original) act on
                # the same snapshot, one after the other, as they would one transaction each.
                machine = snapshot.machine
                cloned = is_clone(machine, heartbeat.body.host_id)
                if cloned:
                    mark_cloned(machine, heartbeat.received, timing)  # kept: 429 is answered after the commit
                else:
                    apply_heartbeat(machine, heartbeat.body, heartbeat.received, timing)
                    failed_upgrades += failed_upgrade(machine, heartbeat.body)
                results.append(Recorded(machine, cloned))
            MachineSnapshot.save_many(connection, list(snapshots.values()), services.update)
            for version, reason in failed_upgrades:
                agent_packages.halt(connection, version, reason)
            return results

        sqlite = ctx.db.engine.dialect.name == "sqlite"
        self._writer: BatchedWrites[Heartbeat, Recorded | ArmError] = BatchedWrites(
            ctx.db.engine,
            record,
            order_by=lambda heartbeat: heartbeat.vm_id,
            threads=1 if sqlite else POSTGRESQL_WRITER_THREADS,
            lock=lambda: services.writing(ctx),
            name="heartbeats",
        )
        services.closers.append(self._writer.close)

    async def answer(self, vm_id: str, assertion: str, body: HeartbeatRequest) -> HeartbeatResponse:
        """Record the heartbeat; raises ArmError when it is refused (after the commit, so that
        a ``Cloned`` mark is kept)."""
        now = self._clock()
        outcome = await self._writer.run(Heartbeat(vm_id, assertion, body, now))
        if isinstance(outcome, ArmError):
            raise outcome
        machine = outcome.machine
        if outcome.cloned:
            raise machine_cloned(machine, self._retry_after)
        return HeartbeatResponse(
            heartbeat_interval_seconds=self._interval_seconds,
            renew_credential=renewal_due(machine, now),
            generation=machine.generation,
        )


def create_router(heartbeats: Heartbeats) -> APIRouter:
    router = APIRouter()

    @router.post(
        "/machines/{vmId}/heartbeat",
        response_model=HeartbeatResponse,
        summary="Heartbeat",
        responses=error_responses(400, 401, 413, 429),
    )
    async def heartbeat(vm_id: VmId, body: HeartbeatRequest, request: Request) -> HeartbeatResponse:
        """Record that the agent is alive; answers when to renew the credential and the generation.

        Well-formed heartbeats are answered by the same code before the framework sees them
        (``fastpath.py``); this route answers the rest, with the framework's errors.
        """
        return await heartbeats.answer(vm_id, assertion_of(request), body)

    return router
