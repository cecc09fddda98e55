"""What gcad keeps on the host (docs/machine-configuration.md, "On the host"), every file written
atomically, root's, 0600 in 0700 folders:

- ``gc_state/assignments.json``: the assignments last read from the control plane and when;
  evaluated from there while the control plane cannot be reached, for at most 14 days;
- ``gc_state/records/<name>.json``: per assignment, the hash evaluated last, when, and the
  package's SHA-256 (an evaluation is ``Initial`` for a hash not yet evaluated);
- ``gc_state/reports/<time>-<reportId>.json``: reports not yet delivered (sent oldest first,
  removed once the control plane has them);
- ``Configuration/<Name>/<sha256>.zip``: the packages, kept only once their SHA-256 and
  signature were checked.

A ``kill -9`` at any moment leaves each file whole (the old or the new); a report is written
only once its evaluation has ended, so nothing half-applied is ever reported.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from arc_agent.fsutil import write_json_atomic
from arc_agent.gcad.resources import write_atomic

OFFLINE_DAYS = 14
MAX_QUEUED_REPORTS = 2000
_SAFE = re.compile(r"[^A-Za-z0-9._-]")


def _read(path: Path) -> dict[str, Any] | None:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return document if isinstance(document, dict) else None


def _utc(text: str) -> dt.datetime | None:
    try:
        moment = dt.datetime.fromisoformat(text)
    except (TypeError, ValueError):
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.timezone.utc)


@dataclass
class Record:
    assignment_hash: str = ""
    evaluated_at: dt.datetime | None = None
    package_sha256: str = ""


class GuestConfigState:
    def __init__(self, state_dir: Path, packages_dir: Path) -> None:
        self.state_dir = state_dir
        self.packages_dir = packages_dir

    def _private_dir(self, path: Path) -> Path:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        return path

    # --- assignments --------------------------------------------------------------------------

    def save_assignments(self, assignments: list[dict[str, Any]], received: dt.datetime) -> None:
        self._private_dir(self.state_dir)
        write_json_atomic(
            self.state_dir / "assignments.json",
            {"receivedAt": received.isoformat(), "assignments": assignments},
            mode=0o600,
        )

    def assignments(self, now: dt.datetime) -> tuple[list[dict[str, Any]], dt.datetime | None]:
        """The cached assignments and when they were received; none once they are older than
        OFFLINE_DAYS (they, their records and packages are then dropped)."""
        document = _read(self.state_dir / "assignments.json") or {}
        received = _utc(str(document.get("receivedAt", "")))
        assignments = document.get("assignments")
        if received is None or not isinstance(assignments, list):
            return [], None
        if now - received > dt.timedelta(days=OFFLINE_DAYS):
            self.drop_all()
            return [], None
        return [a for a in assignments if isinstance(a, dict)], received

    def drop_all(self) -> None:
        """Forget every assignment (and its record and package): 14 days without the control
        plane, or the machine disconnected."""
        (self.state_dir / "assignments.json").unlink(missing_ok=True)
        for folder in (self.state_dir / "records", self.packages_dir):
            if folder.is_dir():
                for path in sorted(folder.rglob("*"), reverse=True):
                    path.rmdir() if path.is_dir() else path.unlink(missing_ok=True)

    # --- records ------------------------------------------------------------------------------

    def _record_path(self, name: str) -> Path:
        return self.state_dir / "records" / f"{_SAFE.sub('_', name)}.json"

    def record(self, name: str) -> Record:
        document = _read(self._record_path(name)) or {}
        return Record(
            str(document.get("assignmentHash", "")),
            _utc(str(document.get("evaluatedAt", ""))),
            str(document.get("packageSha256", "")),
        )

    def save_record(self, name: str, record: Record) -> None:
        self._private_dir(self.state_dir / "records")
        write_json_atomic(
            self._record_path(name),
            {
                "assignmentHash": record.assignment_hash,
                "evaluatedAt": record.evaluated_at.isoformat() if record.evaluated_at else "",
                "packageSha256": record.package_sha256,
            },
            mode=0o600,
        )

    def forget(self, keep: set[str]) -> None:
        """Drop the records and packages of assignments that are gone."""
        records = self.state_dir / "records"
        wanted = {f"{_SAFE.sub('_', name)}.json" for name in keep}
        if records.is_dir():
            for path in records.iterdir():
                if path.name not in wanted:
                    path.unlink(missing_ok=True)

    # --- packages -----------------------------------------------------------------------------

    def package_path(self, name: str, sha256: str) -> Path:
        return self.packages_dir / _SAFE.sub("_", name) / f"{sha256.lower()}.zip"

    def package(self, name: str, sha256: str) -> bytes | None:
        try:
            return self.package_path(name, sha256).read_bytes()
        except OSError:
            return None

    def stage_package(self, data: bytes) -> Path:
        """``data`` in a private file (0600) of its own, to be checked before it is kept."""
        folder = self._private_dir(self.state_dir / "staging")
        path = folder / f"{uuid.uuid4().hex}.zip"
        write_atomic(path, data, 0o600)
        return path

    def keep_package(self, name: str, sha256: str, data: bytes) -> None:
        """Keep a checked package; older packages of the same configuration go."""
        folder = self._private_dir(self._private_dir(self.packages_dir) / _SAFE.sub("_", name))
        write_atomic(self.package_path(name, sha256), data, 0o600)
        for old in folder.glob("*.zip"):
            if old.name != f"{sha256.lower()}.zip":
                old.unlink(missing_ok=True)

    def prune_packages(self, keep: set[str]) -> None:
        """Drop the packages of configurations no assignment names any more."""
        if self.packages_dir.is_dir():
            for folder in self.packages_dir.iterdir():
                if folder.is_dir() and folder.name not in {_SAFE.sub("_", n) for n in keep}:
                    for path in folder.iterdir():
                        path.unlink(missing_ok=True)
                    folder.rmdir()

    # --- reports ------------------------------------------------------------------------------

    def queue_report(self, assignment: str, report: dict[str, Any]) -> None:
        folder = self._private_dir(self.state_dir / "reports")
        stamp = str(report["endTime"]).replace(":", "").replace("+", "Z")
        write_json_atomic(
            folder / f"{stamp}-{report['reportId']}.json",
            {"assignment": assignment, "report": report},
            mode=0o600,
        )
        queued = sorted(folder.glob("*.json"))
        for old in queued[: max(0, len(queued) - MAX_QUEUED_REPORTS)]:
            old.unlink(missing_ok=True)

    def queued_reports(self) -> list[tuple[Path, str, dict[str, Any]]]:
        """(file, assignment, report) of every undelivered report, oldest first."""
        folder = self.state_dir / "reports"
        found = []
        for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
            document = _read(path)
            if document is None or not isinstance(document.get("report"), dict):
                path.unlink(missing_ok=True)  # a file a crash cut short cannot be: it was renamed whole
                continue
            found.append((path, str(document.get("assignment", "")), document["report"]))
        return found


def remove_delivered(path: Path) -> None:
    path.unlink(missing_ok=True)
