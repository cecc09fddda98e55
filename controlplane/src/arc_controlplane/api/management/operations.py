"""The asynchronous-operation resources of Microsoft.HybridCompute (ARM RPC).

A 202 answer carries ``Azure-AsyncOperation`` (the status resource, polled until ``status`` is
terminal), ``Location`` (202 while in progress, 204 once succeeded, the error once failed) and
``Retry-After``. Who may read an operation: whoever may read operation statuses in the
subscription (Reader, Owner), or may read the resource the operation was about (a machine, an
extension, a gateway).
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Depends, Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from arc_controlplane.api.management.access import Access, OperationChecks, OperationRef
from arc_controlplane.auth.roles import GATEWAYS_READ, MACHINES_READ
from arc_controlplane.db.tables import Machine, MachineExtension, Operation
from arc_controlplane.errors import ArmError
from arc_controlplane.http.caller import Caller
from arc_controlplane.http.context import Ctx
from arc_controlplane.http.locations import normalize_location
from arc_controlplane.http.operations import (
    IN_PROGRESS,
    RETRY_AFTER_SECONDS,
    SUCCEEDED,
    end_operation,
    operation_path,
    operation_status_view,
    start_operation,
)
from arc_controlplane.http.responses import JsonResponse
from arc_controlplane.http.versions import API_VERSION_PARAMETER, HYBRID_COMPUTE
from arc_controlplane.machines.extensions import expire_overdue
from arc_controlplane.resource_ids import PROVIDER, subscription_scope

OPERATION_STATUS_READ = f"{PROVIDER}/locations/operationStatus/read"
OPERATION_RESULTS_READ = f"{PROVIDER}/locations/operationResults/read"
LOCATION = f"/subscriptions/{{subscription_id}}/providers/{PROVIDER}/locations/{{location}}"
STATUS = LOCATION + "/operationStatus/{operation_id}"
RESULTS = LOCATION + "/operationResults/{operation_id}"

OperationAccess = Annotated[Access[OperationRef], Depends(OperationChecks(HYBRID_COMPUTE, None))]


def async_operation_headers(public_url: str, operation: Operation, api_version: str) -> dict[str, str]:
    """The headers of a 202 answer for ``operation``."""
    query = f"?{API_VERSION_PARAMETER}={quote(api_version)}"
    return {
        "Azure-AsyncOperation": public_url + operation_path(operation, "operationStatus") + query,
        "Location": public_url + operation_path(operation, "operationResults") + query,
        "Retry-After": str(RETRY_AFTER_SECONDS),
    }


def start_machine_operation(
    session: Session, subscription_id: str, machine: Machine, resource_id: str, now: dt.datetime
) -> Operation:
    """An operation about ``resource_id`` (the machine or one of its extensions), in the machine's
    location."""
    return start_operation(
        session,
        subscription_id=subscription_id,
        location=normalize_location(machine.location) or "global",
        resource_id=resource_id,
        now=now,
    )


def expire_extensions(session: Session, machine: Machine, ctx: Ctx) -> None:
    """End, Failed, the changes of ``machine``'s extensions that its agent has not finished within
    ``--extension-operation-timeout`` (6 hours): read at once, no sweeper needed."""
    now = ctx.clock()
    for operation_id, error in expire_overdue(session, machine, now, ctx.settings.extension_timeout):
        end_operation(session, operation_id, now, error)


def _load(ctx: Ctx, ref: OperationRef, caller: Caller, action: str) -> Operation:
    with ctx.db.session() as session:
        operation = session.get(Operation, ref.operation_id)
        if (
            operation is not None
            and operation.status == IN_PROGRESS
            and operation.start_time <= ctx.clock() - ctx.settings.extension_timeout
        ):
            query = select(MachineExtension.machine_id).where(MachineExtension.operation_id == operation.id)
            machine = session.get(Machine, session.scalars(query).first() or 0)
            if machine is not None:
                expire_extensions(session, machine, ctx)
    if (
        operation is None
        or operation.subscription_id.lower() != ref.subscription_id
        or operation.location.lower() != ref.location
    ):
        raise ArmError(404, "OperationNotFound", f"The operation '{ref.operation_id}' was not found.")
    if not (
        caller.may(action, subscription_scope(ref.subscription_id))
        or caller.may(MACHINES_READ, operation.resource_id)
        or caller.may(GATEWAYS_READ, operation.resource_id)
    ):
        caller.require(action, ref.id)
    return operation


def get_operation_status(granted: OperationAccess, ctx: Ctx) -> JsonResponse:
    """The status resource: ``{id, name, resourceId, status, startTime, endTime, error?}``."""
    operation = _load(ctx, granted.ref, granted.caller, OPERATION_STATUS_READ)
    return JsonResponse(operation_status_view(operation))


def get_operation_result(granted: OperationAccess, ctx: Ctx) -> Response:
    """202 while in progress, 204 once succeeded (deletes have no result), the error once failed."""
    operation = _load(ctx, granted.ref, granted.caller, OPERATION_RESULTS_READ)
    if operation.status == IN_PROGRESS:
        headers = async_operation_headers(ctx.tokens.public_url, operation, granted.api_version)
        return Response(status_code=202, headers=headers)
    if operation.status == SUCCEEDED:
        return Response(status_code=204)
    error = operation.error or {}
    raise ArmError(
        409,
        str(error.get("code") or "OperationFailed"),
        str(error.get("message") or f"The operation ended with status '{operation.status}'."),
    )


def create_router() -> APIRouter:
    router = APIRouter(tags=["operations"])
    router.add_api_route(STATUS, get_operation_status, methods=["GET"], response_model=None)
    router.add_api_route(RESULTS, get_operation_result, methods=["GET"], response_model=None)
    return router
