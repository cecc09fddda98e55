"""A machine's ``status`` and ``statusReason``, derived when read from what is stored.

Nothing scans the table to mark machines Disconnected: the status follows from the last
heartbeat time and the credential's expiry at the moment it is read (docs/reference/connection.md; DESIGN.md
"State and status"), with the server's ``Timing`` (``timing.py``).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from arc_controlplane.db.tables import Machine
from arc_controlplane.timing import Timing

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


def machine_status(machine: Machine, now: dt.datetime, timing: Timing) -> MachineStatus:
    """The status of ``machine`` at ``now``, with the server's ``timing``.

    - never connected: ``AwaitingConnection``;
    - credential lapsed: ``Disconnected`` with reason ``Expired`` (only a new connect heals it);
    - no heartbeat for ``timing.disconnected_after`` (15 minutes by default): ``Disconnected``
      (since heartbeat + that time);
    - the agent reported errors: ``Error``;
    - else ``Connected``; reason ``Cloned`` while a second host heartbeats for this resource.
    """
    if not machine.connected:
        return MachineStatus(AWAITING_CONNECTION, None, machine.last_status_change)
    if machine.credential_not_after is not None and machine.credential_not_after <= now:
        since = max(machine.credential_not_after, machine.last_status_change)
        return MachineStatus(DISCONNECTED, REASON_EXPIRED, since)
    last = machine.last_heartbeat
    disconnected_after = timing.disconnected_after
    if last is None or now - last >= disconnected_after:
        since = (
            machine.last_status_change
            if last is None
            else max(last + disconnected_after, machine.last_status_change)
        )
        return MachineStatus(DISCONNECTED, machine.status_reason, since)
    if machine.error_details:
        return MachineStatus(ERROR, machine.status_reason, machine.last_status_change)
    return MachineStatus(CONNECTED, machine.status_reason, machine.last_status_change)
