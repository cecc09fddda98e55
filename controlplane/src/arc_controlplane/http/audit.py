"""The audit log: every change made through the API, with who, what, when and the result.

A route marks a request as a change with ``audit(request, action, target)``; the middleware
writes the entry once the response is known, so refused and failed changes are logged too.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from typing import Any

import anyio
from fastapi import Request
from sqlalchemy import delete, select
from sqlalchemy.orm import Session
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from arc_controlplane.clock import Clock
from arc_controlplane.db.engine import Database
from arc_controlplane.db.tables import AuditEntry

_AUDIT_KEY = "arc_audit"
LOG = logging.getLogger(__name__)


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


MAX_PENDING_ENTRIES = 10_000
"""Entries kept in memory while the database refuses writes (full disk, unreachable)."""
PRUNE_EVERY = dt.timedelta(hours=1)
PRUNE_BATCH = 5_000


class AuditWriter:
    """Writes audit entries, and keeps the log within its retention.

    An entry the database refuses (full disk, unreachable) is not lost: it is kept in memory,
    at most ``MAX_PENDING_ENTRIES`` of them, and written with the next entry that goes through;
    beyond that, one entry records how many were lost. Entries older than ``retention`` are
    deleted, a batch at a time, at most once an hour, by the writes themselves (a log that
    gets no writes does not grow).
    """

    def __init__(self, db: Database, clock: Clock, retention: dt.timedelta) -> None:
        self._db = db
        self._clock = clock
        self._retention = retention
        self._lock = threading.Lock()
        self._pending: list[dict[str, Any]] = []
        self._lost = 0
        self._next_prune = clock()

    def write(self, values: dict[str, Any]) -> None:
        """Write one entry (the ``AuditEntry`` columns); never raises."""
        with self._lock:
            batch = [*self._pending, values]
            lost, now = self._lost, self._clock()
            try:
                with self._db.session() as session:
                    session.add_all(AuditEntry(**entry) for entry in batch)
                    if lost:
                        session.add(_lost_entry(lost, now))
                    if now >= self._next_prune:
                        self._prune(session, now)
            except Exception as exc:
                self._keep(batch, exc)
                return
            if self._pending:
                LOG.warning(
                    "the audit log is written again; %d held entries were written", len(self._pending)
                )
            self._pending, self._lost = [], 0

    def _keep(self, batch: list[dict[str, Any]], exc: Exception) -> None:
        if not self._pending:
            reason = " ".join(str(getattr(exc, "orig", exc)).split())
            LOG.error(
                "cannot write the audit log (%s): holding its entries until the database takes them", reason
            )
        overflow = max(0, len(batch) - MAX_PENDING_ENTRIES)
        self._pending = batch[overflow:]
        self._lost += overflow

    def _prune(self, session: Session, now: dt.datetime) -> None:
        cutoff = now - self._retention
        oldest = (
            select(AuditEntry.id).where(AuditEntry.time < cutoff).order_by(AuditEntry.id).limit(PRUNE_BATCH)
        )
        ids = list(session.scalars(oldest))
        if ids:
            session.execute(delete(AuditEntry).where(AuditEntry.id.in_(ids)))
        # A full batch means more are due: prune again with the next write.
        self._next_prune = now if len(ids) == PRUNE_BATCH else now + PRUNE_EVERY

    def pending(self) -> int:
        with self._lock:
            return len(self._pending)


def _lost_entry(count: int, now: dt.datetime) -> AuditEntry:
    return AuditEntry(
        time=now,
        principal_id=None,
        principal_name="arc-controlplane",
        action="audit/lost",
        target="audit_log",
        result="Failed:507",
        detail=f"{count} audit entries were lost while the database refused writes",
    )


def entry_values(clock: Clock, state: dict[str, Any], status: int) -> dict[str, Any]:
    entry = state[_AUDIT_KEY]
    caller = state.get("caller")
    return {
        "time": clock(),
        "principal_id": getattr(caller, "principal_id", None),
        "principal_name": getattr(caller, "display_name", None) or state.get("arc_audit_actor", "anonymous"),
        "action": entry["action"],
        "target": entry["target"],
        "result": result_of(status),
        "detail": entry.get("detail", ""),
    }


class AuditMiddleware:
    """Pure ASGI middleware (no per-request overhead beyond one dict lookup when not auditing)."""

    def __init__(self, app: ASGIApp, writer: AuditWriter, clock: Clock) -> None:
        self.app = app
        self.writer = writer
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
                values = entry_values(self.clock, state, status)
                await anyio.to_thread.run_sync(self.writer.write, values)
