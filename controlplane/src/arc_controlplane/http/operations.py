"""Asynchronous ARM operations: the resource that ``Azure-AsyncOperation`` and ``Location`` of a
202 answer point to (ARM RPC "Asynchronous operations").

``/subscriptions/{sub}/providers/Microsoft.HybridCompute/locations/{loc}/operationStatus/{id}``
answers the status resource (``{id, name, resourceId, status, startTime, endTime, error?}``);
``.../operationResults/{id}`` answers 202 while the operation runs and 204 once it succeeded.
Finished operations are kept for ``RETENTION``.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import delete
from sqlalchemy.orm import Session

from arc_controlplane.clock import iso8601, iso8601_or_none
from arc_controlplane.db.tables import Operation
from arc_controlplane.resource_ids import PROVIDER

IN_PROGRESS = "InProgress"
SUCCEEDED = "Succeeded"
FAILED = "Failed"
CANCELED = "Canceled"
RETENTION = dt.timedelta(days=7)
RETRY_AFTER_SECONDS = 1
"""Operations finish before the 202 is sent; clients may poll at once."""


def start_operation(
    session: Session, *, subscription_id: str, location: str, resource_id: str, now: dt.datetime
) -> Operation:
    operation = Operation(
        id=str(uuid.uuid4()),
        subscription_id=subscription_id,
        location=location,
        resource_id=resource_id,
        status=IN_PROGRESS,
        start_time=now,
    )
    session.add(operation)
    return operation


def finish_operation(operation: Operation, now: dt.datetime, error: dict[str, Any] | None = None) -> None:
    operation.status = FAILED if error else SUCCEEDED
    operation.error = error
    operation.end_time = now


def cancel_operation(session: Session, operation_id: str | None, now: dt.datetime) -> None:
    """End the operation ``operation_id`` (a change that a newer one replaced) as ``Canceled``."""
    operation = None if operation_id is None else session.get(Operation, operation_id)
    if operation is not None and operation.status == IN_PROGRESS:
        operation.status = CANCELED
        operation.error = {
            "code": "OperationCanceled",
            "message": "A newer change of the resource replaced it.",
        }
        operation.end_time = now


def end_operation(
    session: Session,
    operation_id: str | None,
    now: dt.datetime,
    error: dict[str, Any] | None,
    *,
    last: bool = True,
) -> None:
    """One part of the operation ``operation_id`` ended (with ``error``, or not); the operation ends
    with its ``last`` part, failed when any part failed (the first error is kept)."""
    operation = None if operation_id is None else session.get(Operation, operation_id)
    if operation is None or operation.status != IN_PROGRESS:
        return
    if error and not operation.error:
        operation.error = error
    if last:
        finish_operation(operation, now, operation.error)


def prune_operations(session: Session, now: dt.datetime) -> None:
    """Forget operations that ended more than ``RETENTION`` ago."""
    session.execute(delete(Operation).where(Operation.end_time < now - RETENTION))


def operation_path(operation: Operation, kind: str) -> str:
    """``kind`` is ``operationStatus`` or ``operationResults``."""
    return (
        f"/subscriptions/{operation.subscription_id}/providers/{PROVIDER}/locations/"
        f"{operation.location}/{kind}/{operation.id}"
    )


def operation_status_view(operation: Operation) -> dict[str, Any]:
    view: dict[str, Any] = {
        "id": operation_path(operation, "operationStatus"),
        "name": operation.id,
        "resourceId": operation.resource_id,
        "status": operation.status,
        "startTime": iso8601(operation.start_time),
        "endTime": iso8601_or_none(operation.end_time),
    }
    if operation.error:
        view["error"] = operation.error
    return view
