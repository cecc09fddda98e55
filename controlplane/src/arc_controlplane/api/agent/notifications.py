"""``GET /agent/v1/machines/{vmId}/notifications``: the long-poll an idle agent sits in.

The answer comes as soon as the machine's ``generation`` differs from the one the agent knows
(new work), or 204 when ``wait`` seconds pass or the server begins to stop. While waiting, the
request holds neither a database connection nor a worker thread: it awaits the in-process
notifier, and re-reads the generation (a short query in the thread pool) when woken and at
least every ``REREAD_INTERVAL`` seconds, so that changes made by another server process are
seen too.
"""

from __future__ import annotations

from typing import Annotated

import anyio
from fastapi import APIRouter, Query, Request, Response
from sqlalchemy import Select, bindparam, select

from arc_controlplane.api.agent.assertions import unknown_machine
from arc_controlplane.api.agent.schema import NotificationResponse
from arc_controlplane.api.agent.services import AgentCtx, AgentServices, VmId, error_responses
from arc_controlplane.db.tables import Machine
from arc_controlplane.http.context import AppContext

REREAD_INTERVAL = 5.0
MAX_WAIT_SECONDS = 120
DEFAULT_WAIT_SECONDS = 60


def generation_query() -> Select[int]:
    return select(Machine.generation).where(Machine.vm_id == bindparam("vm_id"))


def read_generation(ctx: AppContext, query: Select[int], vm_id: str) -> int | None:
    """The machine's generation, or None when it no longer exists."""
    with ctx.db.engine.connect() as connection:
        generation: int | None = connection.execute(query, {"vm_id": vm_id}).scalar()
        return generation


def create_router(services: AgentServices) -> APIRouter:
    router = APIRouter()
    generation_of = generation_query()

    def authenticate(request: Request, ctx: AppContext, vm_id: str) -> tuple[str, int]:
        now = ctx.clock()
        with ctx.db.engine.connect() as connection:
            machine = services.authenticate(connection, request, ctx, vm_id, now).machine
            return machine.vm_id, machine.generation

    @router.get(
        "/machines/{vmId}/notifications",
        response_model=NotificationResponse,
        summary="Wait for new work (long-poll)",
        responses={
            204: {"description": "Nothing new within `wait` seconds; ask again"},
            **error_responses(400, 401),
        },
    )
    async def notifications(
        vm_id: VmId,
        request: Request,
        ctx: AgentCtx,
        generation: Annotated[int, Query(ge=0, le=2**63 - 1, description="The generation the agent knows")],
        wait: Annotated[
            int, Query(ge=1, le=MAX_WAIT_SECONDS, description="Seconds to wait at most")
        ] = DEFAULT_WAIT_SECONDS,
    ) -> Response | NotificationResponse:
        """Answer the current generation once it differs from ``generation``; 204 after ``wait`` s."""
        deadline = anyio.current_time() + wait
        canonical, current = await anyio.to_thread.run_sync(authenticate, request, ctx, vm_id)
        while current == generation:
            remaining = deadline - anyio.current_time()
            if remaining <= 0:
                return Response(status_code=204)
            await ctx.notifier.wait(canonical, min(REREAD_INTERVAL, remaining))
            if ctx.notifier.closed:  # the server is stopping: the agent asks again, elsewhere or later
                return Response(status_code=204)
            latest = await anyio.to_thread.run_sync(read_generation, ctx, generation_of, canonical)
            if latest is None:
                raise unknown_machine(canonical)
            current = latest
        return NotificationResponse(generation=current)

    return router
