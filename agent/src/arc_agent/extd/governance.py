"""CPU limits for extension handlers (docs/extensions.md): how Arc enforces them is not public; we
do what the Azure Linux VM agent does (docs/reference/extensions.md, W:azurelinuxagent/ga/
cgroupconfigurator.py): each handler gets the slice ``azure-vmextensions-<Publisher.Type>.slice``
under ``azure-vmextensions.slice`` with ``CPUQuota`` set by ``systemctl set-property --runtime``
before each command (so a new limit reaches handlers that run), and every command runs in a
transient scope of that slice (``systemd-run --scope``). systemd writes the quota to ``cpu.max``
on cgroup v2 hosts and to ``cpu.cfs_quota_us`` on cgroup v1 hosts."""

from __future__ import annotations

import re
import subprocess
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path

from arc_agent.extd.handler import Handler

PARENT_SLICE = "azure-vmextensions.slice"
EXCEPTIONS = {
    # D:agent-overview.md: the extensions Microsoft lets use more than the default
    "microsoft.azure.monitor.azuremonitorlinuxagent": 60,
    "microsoft.azure.monitor.azuremonitorwindowsagent": 100,
    "microsoft.softwareupdatemanagement.linuxosupdateextension": 60,
    "microsoft.azure.azuredefenderforservers.mde.linux": 60,
    "microsoft.dns.microsoftdnsagent": 100,
    "microsoft.enterprisecloud.monitoring.microsoftmonitoringagent": 60,
    "microsoft.enterprisecloud.monitoring.omsagentforlinux": 60,
}
_UNIT_SAFE = re.compile(r"[^A-Za-z0-9_.-]")


def slice_of(handler: Handler) -> str:
    return f"azure-vmextensions-{_UNIT_SAFE.sub('_', handler.name)}.slice"


def quota_of(handler: Handler, default_percent: int) -> int:
    return EXCEPTIONS.get(handler.name.lower(), default_percent)


def systemd_running(root: Path = Path("/")) -> bool:
    return (root / "run" / "systemd" / "system").is_dir()


def scope_wrapper(
    cpu_limit: Callable[[], int], run: Callable[[Sequence[str]], None] | None = None
) -> Callable[[Handler], Sequence[str]]:
    """What a handler's commands run under: a scope in the handler's slice, whose quota is set
    (from ``cpu_limit()``, the ``extensions.agent.cpulimit`` setting, or the exceptions) first."""

    def set_property(argv: Sequence[str]) -> None:
        subprocess.run(list(argv), check=True, capture_output=True, timeout=30)  # noqa: S603

    apply = run or set_property

    def wrapper(handler: Handler) -> Sequence[str]:
        unit = slice_of(handler)
        apply(["systemctl", "set-property", "--runtime", unit, f"CPUQuota={quota_of(handler, cpu_limit())}%"])
        return [
            "systemd-run", "--scope", "--quiet", "--collect", f"--slice={unit}",
            f"--unit=extension-{uuid.uuid4().hex[:12]}", "--",
        ]  # fmt: skip

    return wrapper
