"""Reading the audit log from tests: the server writes an entry just after it has sent the
response, so the newest entry may lag the reply by a moment."""

from __future__ import annotations

import time

from sqlalchemy import select

from arc_controlplane.db.engine import Database
from arc_controlplane.db.tables import AuditEntry


def audit_entries(db: Database, target: str, count: int, timeout: float = 5) -> list[AuditEntry]:
    """The audit entries about ``target``, oldest first, once there are ``count`` of them
    (or whatever there is after ``timeout`` seconds)."""
    deadline = time.monotonic() + timeout
    while True:
        with db.session() as session:
            entries = list(
                session.scalars(select(AuditEntry).where(AuditEntry.target == target).order_by(AuditEntry.id))
            )
        if len(entries) >= count or time.monotonic() > deadline:
            return entries
        time.sleep(0.02)
