"""What systemd says of the agent's units (``systemctl show``), for ``show`` and heartbeats."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path


def which(name: str) -> str | None:
    """``shutil.which`` without importing shutil (and the compression modules it pulls in: the
    agent service counts its memory)."""
    for directory in os.environ.get("PATH", os.defpath).split(os.pathsep):
        candidate = os.path.join(directory or ".", name)
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    return None


def systemd_running(root: Path = Path("/")) -> bool:
    """Whether systemd manages this host (it creates /run/systemd/system when it boots)."""
    return (root / "run" / "systemd" / "system").is_dir()


@dataclass(frozen=True)
class UnitState:
    load: str
    """``loaded``, ``not-found``, ... (``unknown`` without systemd)."""
    active: str
    """``active``, ``inactive``, ``failed``, ..."""
    enabled: str
    """``enabled``, ``disabled``, ``static``, ... (UnitFileState)."""

    @property
    def installed(self) -> bool:
        return self.load not in ("not-found", "unknown")

    @property
    def running(self) -> bool:
        return self.active == "active"


UNKNOWN = UnitState("unknown", "unknown", "unknown")


def unit_states(units: Sequence[str]) -> dict[str, UnitState]:
    """The state of each unit; ``UNKNOWN`` for all when systemctl is missing or fails."""
    systemctl = which("systemctl")
    if systemctl is None:
        return {unit: UNKNOWN for unit in units}
    try:
        shown = subprocess.run(  # noqa: S603 - systemctl with unit names of ours, no shell
            [systemctl, "show", "--property=Id,LoadState,ActiveState,UnitFileState", *units],
            capture_output=True,
            text=True,
            timeout=10,
            env={**os.environ, "LC_ALL": "C"},
            check=False,
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return {unit: UNKNOWN for unit in units}
    found: dict[str, UnitState] = {}
    for block in shown.strip().split("\n\n"):
        fields = dict(line.split("=", 1) for line in block.splitlines() if "=" in line)
        found[fields.get("Id", "")] = UnitState(
            fields.get("LoadState", "unknown"),
            fields.get("ActiveState", "unknown"),
            fields.get("UnitFileState", "") or "unknown",
        )
    return {unit: found.get(unit, UNKNOWN) for unit in units}


ON_DEMAND = {"extd.service": "extd.path", "gcad.service": "gcad.path"}
"""The services started on demand (``ondemand.py``) and the path units that start them."""


def service_states(units: Sequence[str]) -> dict[str, UnitState]:
    """``unit_states`` as users see services: one started on demand (its path unit installed)
    runs while it works or while its path unit waits for work, and starts at boot when its path
    unit does."""
    triggers = [ON_DEMAND[unit] for unit in units if unit in ON_DEMAND]
    states = unit_states([*units, *triggers])
    shown = {}
    for unit in units:
        state, trigger = states[unit], states.get(ON_DEMAND.get(unit, ""))
        if trigger is not None and trigger.installed and state.installed:
            active = "active" if state.running or trigger.running else state.active
            state = UnitState(state.load, active, trigger.enabled)
        shown[unit] = state
    return shown


def restart_running(units: Sequence[str]) -> list[str]:
    """``systemctl try-restart`` those of ``units`` that run (as root, under systemd); the line
    that says so, as the real agent prints it (``INFO Updating service configuration: ...``),
    or nothing."""
    if os.geteuid() != 0 or not systemd_running():
        return []
    running = [unit for unit, state in unit_states(list(units)).items() if state.running]
    if not running:
        return []
    systemctl = which("systemctl") or "/usr/bin/systemctl"
    subprocess.run(  # noqa: S603 - a fixed argv
        [systemctl, "try-restart", *running], capture_output=True, check=False, timeout=120
    )
    return [f"INFO Updating service configuration: {', '.join(u.removesuffix('.service') for u in running)}"]
