"""Automatic agent upgrades (docs/agent-upgrade.md, "Automatic upgrades"): which published
version the machines with ``agentUpgrade.enableAutomaticUpgrade`` are offered, in batches.

The version rolled out is the newest published one that no machine failed to upgrade to. The
machines with automatic upgrades are put in a stable order for that version (a hash of the
version and the vmId, so that the first batch differs from version to version), then cut into
batches: the first, the canary, is a tenth of them (at least one); each next batch is twice the
one before. A batch is offered the version once every machine of the batches before it is done
with it: runs it (or newer), attempted it, or is not connected (it cannot hold the others back).
A failed attempt at the version halts it: it is not offered to anyone else, and the version
before it (if newer than a machine's) is rolled out instead; ``arc-controlplane agent rollout``
shows which machine failed and why. Pure: the fleet in, the plan out.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import math
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, select
from sqlalchemy.orm import Session

from arc_controlplane.db.tables import Machine
from arc_controlplane.machines import agent_packages
from arc_controlplane.machines.catalog import version_key
from arc_controlplane.machines.status import CONNECTED, ERROR, machine_status
from arc_controlplane.timing import Timing

CANARY_SHARE = 0.1


@dataclass(frozen=True)
class Candidate:
    """A machine with automatic upgrades."""

    vm_id: str
    name: str
    version: str
    active: bool
    """Connected and heard from (status Connected or Error): it can take an upgrade now."""
    attempt: Mapping[str, Any] = field(default_factory=dict)
    """Its ``agentUpgrade.lastAttempt*``."""

    def attempted(self, version: str) -> bool:
        return version_key(str(self.attempt.get("lastAttemptDesiredVersion") or "")) == version_key(version)

    def failed(self, version: str) -> bool:
        return self.attempted(version) and self.attempt.get("lastAttemptStatus") == "Failed"

    def runs_at_least(self, version: str) -> bool:
        return bool(version_key(self.version)) and version_key(self.version) >= version_key(version)


@dataclass(frozen=True)
class Batch:
    machines: list[Candidate]
    offered: bool

    def done(self, version: str) -> list[Candidate]:
        return [m for m in self.machines if finished(m, version)]


@dataclass(frozen=True)
class Plan:
    version: str | None
    """The version rolled out (None: nothing published, or every version halted)."""
    batches: list[Batch]
    halted: dict[str, str]
    """Halted versions, each with why (the machine that failed and its message)."""
    offers: dict[str, str]
    """vmId -> the version it is offered (only machines that run an older one)."""


def finished(machine: Candidate, version: str) -> bool:
    return machine.runs_at_least(version) or machine.attempted(version) or not machine.active


def batch_sizes(count: int) -> list[int]:
    sizes, left, size = [], count, max(1, math.ceil(count * CANARY_SHARE))
    while left > 0:
        sizes.append(min(size, left))
        left -= sizes[-1]
        size *= 2
    return sizes


def plan(
    versions: Sequence[str], machines: Sequence[Candidate], halted_before: Mapping[str, str] | None = None
) -> Plan:
    """The rollout over ``machines`` of the newest of ``versions`` (oldest first) not halted:
    neither in ``halted_before`` (the versions halted for good, with why) nor failed now."""
    halted = {v: why for v, why in (halted_before or {}).items() if v in versions}
    for version in versions:
        failed = [m for m in machines if m.failed(version) and not m.runs_at_least(version)]
        if failed and version not in halted:
            first = failed[0]
            said = first.attempt.get("lastAttemptMessage") or "no message"
            more = f" (and {len(failed) - 1} more)" if len(failed) > 1 else ""
            halted[version] = f"{first.name} failed to upgrade to it: {said}{more}"
    good = [v for v in versions if v not in halted]
    if not good:
        return Plan(None, [], halted, {})
    version = good[-1]
    ordered = sorted(machines, key=lambda m: hashlib.sha256(f"{version}/{m.vm_id}".encode()).hexdigest())
    batches, start, before_done = [], 0, True
    for size in batch_sizes(len(ordered)):
        members = ordered[start : start + size]
        start += size
        batches.append(Batch(members, before_done))
        before_done = before_done and all(finished(m, version) for m in members)
    offers = {}
    for batch in batches:
        if batch.offered:
            offers.update({m.vm_id: version for m in batch.machines if not m.runs_at_least(version)})
    return Plan(version, batches, halted, offers)


AUTOMATIC = Machine.properties["agentUpgrade"]["enableAutomaticUpgrade"].as_boolean()
COLUMNS = (
    Machine.vm_id, Machine.name, Machine.agent_version, Machine.properties, Machine.connected,
    Machine.credential_not_after, Machine.last_heartbeat, Machine.last_status_change,
    Machine.status_reason, Machine.error_details,
)  # fmt: skip


def candidates(connection: Connection, now: dt.datetime, timing: Timing) -> list[Candidate]:
    """The machines with ``agentUpgrade.enableAutomaticUpgrade: true``, as the plan sees them."""
    found = []
    for row in connection.execute(select(*COLUMNS).where(AUTOMATIC.is_(True))):
        values = dict(row._mapping)
        machine = Machine(**values)
        upgrade = (values["properties"] or {}).get("agentUpgrade") or {}
        status = machine_status(machine, now, timing).status
        found.append(
            Candidate(
                vm_id=values["vm_id"],
                name=values["name"],
                version=values["agent_version"] or "",
                active=status in (CONNECTED, ERROR),
                attempt={k: v for k, v in upgrade.items() if k.startswith("lastAttempt")},
            )
        )
    return found


def current_plan(session: Session, now: dt.datetime, timing: Timing) -> Plan:
    return plan(
        agent_packages.versions(session),
        candidates(session.connection(), now, timing),
        agent_packages.halted(session),
    )


class PlanCache:
    """The plan, made at most once every ``ttl`` seconds per process: every machine's self-read
    asks for its offer, and the plan reads the whole automatic fleet."""

    def __init__(self, ttl: float = 5.0) -> None:
        self.ttl = ttl
        self._lock = threading.Lock()
        self._plan: Plan | None = None
        self._made = 0.0

    def get(self, session: Session, now: dt.datetime, timing: Timing) -> Plan:
        with self._lock:
            if self._plan is None or time.monotonic() - self._made >= self.ttl:
                self._plan, self._made = current_plan(session, now, timing), time.monotonic()
            return self._plan
