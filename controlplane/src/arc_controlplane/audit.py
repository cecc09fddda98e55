"""The audit log: every change made through the API, with who, what, when and the result.

A route marks a request as a change with ``audit(request, action, target)``; the middleware
writes the entry once the response is known, so refused and failed changes are logged too.
"""

from __future__ import annotations

from typing import Any

import anyio
from fastapi import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from arc_controlplane.clock import Clock
from arc_controlplane.db.engine import Database
from arc_controlplane.db.models import AuditEntry

_AUDIT_KEY = "arc_audit"


def audit(request: Request, action: str, target: str, detail: str = "") -> None:
    """Record, when the response is sent, that this request attempted ``action`` on ``target``."""
    request.state.arc_audit = {"action": action, "target": target, "detail": detail}


def set_audit_detail(request: Request, detail: str) -> None:
    entry = getattr(request.state, _AUDIT_KEY, None)
    if entry is not None:
        entry["detail"] = detail


def result_of(status: int) -> str:
    if status < 400:
        return f"Succeeded:{status}"
    if status in (401, 403):
        return f"Denied:{status}"
    return f"Failed:{status}"


def write_entry(db: Database, clock: Clock, state: dict[str, Any], status: int) -> None:
    entry = state[_AUDIT_KEY]
    caller = state.get("caller")
    with db.session() as session:
        session.add(
            AuditEntry(
                time=clock(),
                principal_id=getattr(caller, "principal_id", None),
                principal_name=getattr(caller, "display_name", None)
                or state.get("arc_audit_actor", "anonymous"),
                action=entry["action"],
                target=entry["target"],
                result=result_of(status),
                detail=entry.get("detail", ""),
            )
        )


class AuditMiddleware:
    """Pure ASGI middleware (no per-request overhead beyond one dict lookup when not auditing)."""

    def __init__(self, app: ASGIApp, db: Database, clock: Clock) -> None:
        self.app = app
        self.db = db
        self.clock = clock

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500

        async def capture(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, capture)
        finally:
            state = scope.get("state") or {}
            if _AUDIT_KEY in state:
                await anyio.to_thread.run_sync(write_entry, self.db, self.clock, state, status)
