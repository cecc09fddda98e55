"""A machine's ``status`` and ``statusReason``, derived when read from what is stored.

Nothing scans the table to mark machines Disconnected: the status follows from the last
heartbeat time and the credential's expiry at the moment it is read (reference §4; DESIGN.md
"State and status").
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from arc_controlplane.db.models import Machine

HEARTBEAT_INTERVAL = dt.timedelta(minutes=5)
DISCONNECTED_AFTER = dt.timedelta(minutes=15)
CREDENTIAL_LIFETIME = dt.timedelta(days=90)
RENEW_WHEN_LEFT = dt.timedelta(days=45)

CONNECTED = "Connected"
DISCONNECTED = "Disconnected"
ERROR = "Error"
AWAITING_CONNECTION = "AwaitingConnection"
REASON_EXPIRED = "Expired"
REASON_CLONED = "Cloned"


@dataclass(frozen=True)
class MachineStatus:
    status: str
    status_reason: str | None
    last_status_change: dt.datetime


def machine_status(machine: Machine, now: dt.datetime) -> MachineStatus:
    """The status of ``machine`` at ``now``.

    - never connected: ``AwaitingConnection``;
    - credential lapsed: ``Disconnected`` with reason ``Expired`` (only a new connect heals it);
    - no heartbeat for 15 minutes: ``Disconnected`` (since heartbeat + 15 min);
    - the agent reported errors: ``Error``;
    - else ``Connected``; reason ``Cloned`` while a second host heartbeats for this resource.
    """
    if not machine.connected:
        return MachineStatus(AWAITING_CONNECTION, None, machine.last_status_change)
    if machine.credential_not_after is not None and machine.credential_not_after <= now:
        since = max(machine.credential_not_after, machine.last_status_change)
        return MachineStatus(DISCONNECTED, REASON_EXPIRED, since)
    last = machine.last_heartbeat
    if last is None or now - last >= DISCONNECTED_AFTER:
        since = (
            machine.last_status_change
            if last is None
            else max(last + DISCONNECTED_AFTER, machine.last_status_change)
        )
        return MachineStatus(DISCONNECTED, machine.status_reason, since)
    if machine.error_details:
        return MachineStatus(ERROR, machine.status_reason, machine.last_status_change)
    return MachineStatus(CONNECTED, machine.status_reason, machine.last_status_change)
