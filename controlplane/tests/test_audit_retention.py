"""The audit log has a retention (issue 10, finding 4: failed sign-ins added rows that were
never pruned, about 9.5 GB a day under attack)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from conftest import run_cli, start_server
from sqlalchemy import select

from arc_controlplane.db.engine import Database
from arc_controlplane.db.migrate import upgrade
from arc_controlplane.db.tables import AuditEntry
from arc_controlplane.http.audit import AuditWriter


def entry(time: dt.datetime, target: str) -> AuditEntry:
    return AuditEntry(time=time, principal_id=None, principal_name="t", action="test/act", target=target,
                      result="Succeeded:200", detail="")  # fmt: skip


def test_old_entries_are_pruned_by_the_next_write(tmp_path: Path) -> None:
    db = Database.open(f"sqlite:///{tmp_path / 'cp.db'}")
    upgrade(db.engine)
    now = dt.datetime(2026, 12, 3, 12, tzinfo=dt.UTC)
    with db.session() as session:
        session.add_all(entry(now - dt.timedelta(days=days), f"old-{days}") for days in (40, 31, 29, 1))
    writer = AuditWriter(db, lambda: now, dt.timedelta(days=30))
    writer.write({"time": now, "principal_id": None, "principal_name": "t", "action": "test/act",
                  "target": "new", "result": "Succeeded:200", "detail": ""})  # fmt: skip
    with db.session() as session:
        targets = set(session.scalars(select(AuditEntry.target)))
    assert targets == {"old-29", "old-1", "new"}
    db.dispose()


def test_serve_takes_a_retention_and_refuses_nonsense(tmp_path: Path) -> None:
    done = run_cli("serve", "--data-dir", str(tmp_path / "d"), "--audit-retention-days", "0")
    assert done.returncode == 2
    assert "--audit-retention-days" in done.stderr and "from 1 to" in done.stderr
    server = start_server(tmp_path / "data", ["--audit-retention-days", "7"])
    server.stop()
