"""Clone detection: a second host speaking for a machine with a copy of its key.

The host that registered a machine is remembered by its ``hostId``. When a call that changes the
machine (heartbeat, credential renewal) comes from another host, the machine gets
``statusReason: Cloned`` and the caller gets 429 ``MachineCloned``; the machine keeps that
reason until its original host registers again (``machines/registration.py``).
"""

from __future__ import annotations

import datetime as dt

from arc_controlplane.db.tables import Machine
from arc_controlplane.errors import ArmError
from arc_controlplane.machines.status import REASON_CLONED, machine_status
from arc_controlplane.timing import Timing


def is_clone(machine: Machine, host_id: str) -> bool:
    return machine.host_id != host_id


def mark_cloned(machine: Machine, now: dt.datetime, timing: Timing) -> None:
    """Give ``machine`` the reason ``Cloned`` (and a status change time if that is new)."""
    before = machine_status(machine, now, timing)
    machine.status_reason = REASON_CLONED
    after = machine_status(machine, now, timing)
    if (after.status, after.status_reason) != (before.status, before.status_reason):
        machine.last_status_change = now


def machine_cloned(machine: Machine, retry_after: str) -> ArmError:
    """The 429 for the copy; ``retry_after`` is the heartbeat interval in seconds, as text."""
    return ArmError(
        429,
        "MachineCloned",
        f"Another host is connected as machine '{machine.name}' (vmId '{machine.vm_id}'): this host looks "
        "like a copy of it (a cloned disk or image). On this host, run 'azcmagent disconnect "
        "--force-local-only', then 'azcmagent connect --resource-name <a unique name>'.",
        headers={"Retry-After": retry_after},
    )
