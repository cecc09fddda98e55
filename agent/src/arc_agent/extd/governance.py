"""CPU limits for extension handlers (docs/extensions.md): how Arc enforces them is not public; we
do what the Azure Linux VM agent does (docs/reference/extensions.md, W:azurelinuxagent/ga/
cgroupconfigurator.py): each handler gets the slice ``azure-vmextensions-<Publisher.Type>.slice``
under ``azure-vmextensions.slice`` with ``CPUQuota`` set by ``systemctl set-property --runtime``
before its first command and again whenever ``extensions.agent.cpulimit`` changes (so a new
limit reaches handlers that run), and every command runs in a transient scope of that slice
(``systemd-run --scope``). systemd writes the quota to ``cpu.max``
on cgroup v2 hosts and to ``cpu.cfs_quota_us`` on cgroup v1 hosts."""

from __future__ import annotations

import logging
import os
import re
import subprocess
import threading
import uuid
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from arc_agent.config.settings import LocalConfig
from arc_agent.errors import AzcmError
from arc_agent.extd.handler import Handler, HandlerError

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
    """The handler's quota: the reference's exceptions table, else its manifest's
    ``resourceLimits.cpuQuotaPercentage`` when it asks for less than the setting, else the setting."""
    if handler.name.lower() in EXCEPTIONS:
        return EXCEPTIONS[handler.name.lower()]
    try:
        limits = handler.manifest().get("resourceLimits")
    except HandlerError:
        limits = None
    asked = limits.get("cpuQuotaPercentage") if isinstance(limits, dict) else None
    if isinstance(asked, int) and not isinstance(asked, bool) and 0 < asked < default_percent:
        return asked
    return default_percent


def cpu_controller(root: Path = Path("/sys/fs/cgroup")) -> str | None:
    """Why a quota would not be enforced on this host (None when it is): cgroup v2 with the cpu
    controller, or cgroup v1 with a writable cpu hierarchy."""
    controllers = root / "cgroup.controllers"
    if controllers.exists():
        if "cpu" in controllers.read_text(encoding="ascii").split():
            return None
        return f"the cpu controller is not enabled in {root} (cgroup v2)"
    if (root / "cpu" / "cgroup.procs").exists():
        if os.access(root / "cpu", os.W_OK):
            return None
        return f"{root / 'cpu'} is read-only (cgroup v1; a container that does not delegate it)"
    return f"no cpu controller under {root}"


CPU_LIMIT = "extensions.agent.cpulimit"
DEFAULT_CPU_LIMIT = 5


def cpu_limit_setting(settings_file: Path) -> Callable[[], int]:
    """``extensions.agent.cpulimit`` as a function, which parses the settings file again only
    when it changed (the governor's watch asks every 2 seconds)."""
    seen: dict[str, object] = {}

    def cpu_limit() -> int:
        try:
            info = settings_file.stat()
            stamp: object = (info.st_mtime_ns, info.st_size, info.st_ino)
        except OSError:
            stamp = None
        if "stamp" not in seen or seen["stamp"] != stamp:
            value = LocalConfig.load(settings_file).get(CPU_LIMIT)
            seen.update(stamp=stamp, limit=value if isinstance(value, int) else DEFAULT_CPU_LIMIT)
        return int(str(seen["limit"]))

    return cpu_limit


def _set_property(argv: Sequence[str]) -> None:
    subprocess.run(list(argv), check=True, capture_output=True, timeout=30)  # noqa: S603


class CpuGovernor:
    """What a handler's commands run under: a scope in the handler's slice whose quota is set
    (from ``cpu_limit()``, the ``extensions.agent.cpulimit`` setting) before each command, and
    set again on every slice it has used when the setting changes (``refresh``), so that a new
    limit reaches handlers that are running."""

    def __init__(
        self, cpu_limit: Callable[[], int], run: Callable[[Sequence[str]], None] = _set_property
    ) -> None:
        self.cpu_limit = cpu_limit
        self.run = run
        self._lock = threading.Lock()
        self._quotas: dict[str, tuple[Handler, int]] = {}
        """Slice → (its handler, the quota last set on it)."""

    def _apply(self, handler: Handler, limit: int) -> None:
        unit, quota = slice_of(handler), quota_of(handler, limit)
        with self._lock:
            if self._quotas.get(unit, (handler, -1))[1] == quota:
                return
            self.run(["systemctl", "set-property", "--runtime", unit, f"CPUQuota={quota}%"])
            self._quotas[unit] = (handler, quota)

    def __call__(self, handler: Handler) -> Sequence[str]:
        self._apply(handler, self.cpu_limit())
        return [
            "systemd-run", "--scope", "--quiet", "--collect", f"--slice={slice_of(handler)}",
            f"--unit=extension-{uuid.uuid4().hex[:12]}", "--",
        ]  # fmt: skip

    def adopt(self, handlers: Iterable[Handler]) -> None:
        """Handlers installed before this process started (extd runs on demand): their slices'
        quotas set from the setting now, and kept from then on like those of handlers it ran."""
        with self._lock:
            for handler in handlers:
                self._quotas.setdefault(slice_of(handler), (handler, -1))
        self.refresh()

    def refresh(self) -> None:
        """The setting read again and applied to every slice used so far (nothing is read while
        no handler has run: an idle extd does no work every 2 seconds)."""
        with self._lock:
            handlers = [handler for handler, _ in self._quotas.values()]
        if not handlers:
            return
        limit = self.cpu_limit()
        for handler in handlers:
            self._apply(handler, limit)

    def watch(self, stop: threading.Event, interval: float = 2.0) -> threading.Thread:
        """``refresh`` every ``interval`` seconds in a thread until ``stop`` is set."""

        def loop() -> None:
            while not stop.wait(interval):
                try:
                    self.refresh()
                except (OSError, subprocess.SubprocessError, AzcmError) as exc:
                    # (an unreadable settings file, a systemctl that failed): the quotas stay as
                    # they were, and the next look tries again
                    logging.getLogger("extd").warning("the CPU quota could not be set again: %s", exc)

        thread = threading.Thread(target=loop, name="cpu-governor", daemon=True)
        thread.start()
        return thread
