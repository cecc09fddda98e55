"""The audit log from the admin side: entries for the CLI's own changes, and reading it back."""

from __future__ import annotations

import datetime as dt
import os
import pwd
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from arc_controlplane.db.tables import AuditEntry

CLI_PRINCIPAL = "arc-controlplane-cli"
SUCCEEDED = "Succeeded"


def cli_actor(euid: int | None = None) -> str:
    """``arc-controlplane-cli (<unix user>)``: who the audit log names for CLI changes."""
    uid = os.geteuid() if euid is None else euid
    try:
        user = pwd.getpwuid(uid).pw_name
    except KeyError:
        user = f"uid {uid}"
    return f"{CLI_PRINCIPAL} ({user})"


def record(
    session: Session, actor: str, action: str, target: str, now: dt.datetime, detail: str = ""
) -> None:
    """Add an entry for a change the CLI makes, in the same transaction as the change."""
    session.add(
        AuditEntry(
            time=now,
            principal_id=None,
            principal_name=actor,
            action=action,
            target=target,
            result=SUCCEEDED,
            detail=detail,
        )
    )


@dataclass(frozen=True)
class AuditRow:
    time: dt.datetime
    principal: str
    principal_id: str | None
    action: str
    target: str
    result: str
    detail: str


def newest_entries(session: Session, limit: int) -> list[AuditRow]:
    """The ``limit`` newest entries, newest first."""
    rows = session.scalars(
        select(AuditEntry).order_by(AuditEntry.time.desc(), AuditEntry.id.desc()).limit(limit)
    )
    return [
        AuditRow(
            row.time, row.principal_name, row.principal_id, row.action, row.target, row.result, row.detail
        )
        for row in rows
    ]
