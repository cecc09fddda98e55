"""What the agent routes share: per-application state, machine authentication, small helpers."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Annotated, Any

import jwt
from fastapi import Depends, Path, Request
from sqlalchemy import Connection, Select, Update
from sqlalchemy.orm import Session

from arc_controlplane.api.agent.assertions import (
    AUDIENCE_PATH,
    AssertionVerifier,
    PublicKeyCache,
    assertion_of,
    canonical_vm_id,
    unknown_machine,
)
from arc_controlplane.api.agent.schema import ErrorResponse
from arc_controlplane.api.agent.snapshot import MachineSnapshot, machine_query, machine_update
from arc_controlplane.db.tables import Machine
from arc_controlplane.errors import ArmError
from arc_controlplane.http.context import AppContext, get_context
from arc_controlplane.machines.credentials import CaLoader
from arc_controlplane.machines.rollout import PlanCache

BASE_PATH = "/agent/v1"

VmId = Annotated[str, Path(alias="vmId", description="The machine's vmId (from its registration)")]
"""Route parameter type: the ``{vmId}`` of a machine route."""


@dataclass(frozen=True)
class AgentServices:
    """State the agent routes keep for the life of one application (never module-global)."""

    ctx: AppContext
    verifier: AssertionVerifier
    ca: CaLoader
    read: Select[Any]
    """The machine's ``BASE_COLUMNS``: enough for most calls."""
    update: Update
    """Writes a snapshot's changes (``MachineSnapshot.save``)."""
    sqlite_writer: threading.Lock
    rollout: PlanCache = field(default_factory=PlanCache)
    """Automatic agent upgrades: the plan every machine's self-read takes its offer from."""
    closers: list[Callable[[], None]] = field(default_factory=list)
    """What ``close`` stops (the routes' writer threads)."""

    @classmethod
    def create(cls, ctx: AppContext) -> AgentServices:
        return cls(
            ctx,
            AssertionVerifier(PublicKeyCache()),
            CaLoader(),
            machine_query(),
            machine_update(),
            threading.Lock(),
        )

    def close(self) -> None:
        """Stop what the routes started; called once the server stops taking requests."""
        while self.closers:
            self.closers.pop()()

    @contextmanager
    def writing(self, ctx: AppContext) -> Iterator[None]:
        """Wrap a write transaction: on SQLite, the agent writes of this process take turns.

        SQLite admits one writer at a time; a thread that finds the database locked sleeps in
        its busy handler (milliseconds, backing off), which under load costs far more than
        waiting for a lock. PostgreSQL needs no such thing (row locks, ``FOR UPDATE``).
        """
        if ctx.db.engine.dialect.name != "sqlite":
            yield
            return
        with self.sqlite_writer:
            yield

    def authenticate(
        self,
        connection: Connection,
        request: Request,
        ctx: AppContext,
        vm_id: str,
        now: dt.datetime,
        query: Select[Any] | None = None,
    ) -> MachineSnapshot:
        """The machine ``vm_id``, read with ``query`` (``machine_query()``; by default
        ``self.read``), if the request carries a valid assertion of it; else 401.

        Also names the machine as the actor in the audit log.
        """
        snapshot = self.authenticate_assertion(connection, assertion_of(request), ctx, vm_id, now, query)
        name_actor(request, snapshot.machine)
        return snapshot

    def machine_row(
        self, session: Session, request: Request, ctx: AppContext, vm_id: str, *, for_update: bool = False
    ) -> Machine:
        """The authenticated machine ``vm_id`` as a row of ``session`` (locked with ``for_update``),
        for routes that read or change more than the machine's own columns; 401 otherwise."""
        with ctx.db.engine.connect() as connection:
            row_id = self.authenticate(connection, request, ctx, vm_id, ctx.clock()).machine.id
        machine = session.get(Machine, row_id, with_for_update=for_update)
        if machine is None:  # deleted between the two reads
            raise ArmError(401, "InvalidAssertion", f"no machine with vmId {vm_id}")
        return machine

    def authenticate_any(self, request: Request, ctx: AppContext) -> None:
        """401 unless the request carries a valid assertion of some machine (its ``sub`` claim
        names it): for what every machine may read (packages, the package-signing key)."""
        token = assertion_of(request)
        try:
            vm_id = str(jwt.decode(token, options={"verify_signature": False}).get("sub", ""))
        except jwt.PyJWTError:
            vm_id = ""
        with ctx.db.engine.connect() as connection:
            self.authenticate(connection, request, ctx, vm_id or "-", ctx.clock())

    def authenticate_assertion(
        self,
        connection: Connection,
        token: str,
        ctx: AppContext,
        vm_id: str,
        now: dt.datetime,
        query: Select[Any] | None = None,
    ) -> MachineSnapshot:
        """As ``authenticate``, for an assertion taken from its request already (any thread)."""
        canonical = canonical_vm_id(vm_id)
        if canonical is None:
            raise unknown_machine(vm_id[:64])
        snapshot = MachineSnapshot.load(connection, self.read if query is None else query, canonical)
        return self.check_assertion(snapshot, token, ctx, canonical, now)

    def check_assertion(
        self, snapshot: MachineSnapshot | None, token: str, ctx: AppContext, vm_id: str, now: dt.datetime
    ) -> MachineSnapshot:
        """``snapshot`` (the machine read for ``vm_id``, None if there is none) if ``token`` is a
        valid assertion of it; else 401 (or 404 when there is no such machine)."""
        if snapshot is None:
            raise unknown_machine(vm_id[:64])
        self.verifier.verify(token, snapshot.machine, agent_audience(ctx), now)
        return snapshot


def name_actor(request: Request, machine: Machine) -> None:
    """Name the machine as the actor of ``request`` in the audit log."""
    request.state.arc_audit_actor = f"machine {machine.name} ({machine.vm_id})"


def agent_audience(ctx: AppContext) -> str:
    return ctx.tokens.public_url + AUDIENCE_PATH


async def _agent_context(request: Request) -> AppContext:
    # async: resolved on the event loop, without a trip through the thread pool.
    return get_context(request)


AgentCtx = Annotated[AppContext, Depends(_agent_context)]
"""Route parameter type for the application's context (cheap on hot paths)."""


def iso_utc(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


_ERROR_DESCRIPTIONS = {
    400: "Invalid request (InvalidRequestContent and the codes in docs/agent-protocol.md)",
    401: "Not authenticated (InvalidAssertion, CredentialExpired or InvalidAuthenticationToken)",
    403: "Not authorised (AuthorizationFailed, InvalidAuthenticationTokenTenant)",
    404: "Not found",
    409: "Conflict",
    413: "Request body too large",
    429: "Another host uses this machine's identity (MachineCloned)",
}


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for the ARM error bodies a route may answer with."""
    return {
        status: {"model": ErrorResponse, "description": _ERROR_DESCRIPTIONS[status]} for status in statuses
    }
