"""One upgrade of the agent on this host (docs/agent-upgrade.md): the new version staged next to
the running one (``layout.py``), then

1. the upgrade is written down (``<prefix>/upgrade.pending``: where it comes from, where it goes,
   which services ran, and this process, so that ``recover.sh`` can tell a live upgrade from a
   cut one);
2. the services that run are stopped, ``current`` is switched, they are started again;
3. the health checks, until they pass or the time is up: every service that ran runs, himds
   answers ``/agentstatus`` with the new version, and (on a connected machine) the control plane
   has accepted a heartbeat of it;
4. passed: the pending record goes, older versions are pruned; failed: the services are stopped,
   the version it came from is current again, they are started, the new version's folder goes,
   and the failure is recorded and raised.

Identity, keys, settings and extensions are not touched. What happened last is written to
``/var/opt/azcmagent/upgrade-status.json`` in the ARM contract's ``agentUpgrade.lastAttempt*``
names, for himds to report."""

from __future__ import annotations

import datetime as dt
import http.client
import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from arc_agent.config.upgrade_status import read_last_attempt
from arc_agent.errors import AzcmError, ErrorCode
from arc_agent.fsutil import remove_if_present, write_atomic, write_json_atomic
from arc_agent.processes import boot_id, process_start
from arc_agent.systemd import ON_DEMAND, unit_states, which
from arc_agent.upgrade.layout import RECOVER, Layout

UNITS = ("himdsd.service", "extd.path", "extd.service", "arcproxyd.service", "gcad.path", "gcad.service")
"""The agent's units; a service started on demand after its path unit (stopped with it during the
switch, so that no wake starts the old version in between)."""
PENDING = "upgrade.pending"
HIMDS_PORT = 40342
STATUS_API_VERSION = "2019-08-15"


class Services(Protocol):
    """The services of the agent as systemd runs them (``Systemd``; tests script it)."""

    def running(self, units: Sequence[str]) -> list[str]: ...

    def stop(self, units: Sequence[str]) -> None: ...

    def start(self, units: Sequence[str]) -> None: ...


class Systemd:
    def running(self, units: Sequence[str]) -> list[str]:
        """Those of ``units`` that run; a service started on demand also when it ended cleanly and
        its path unit waits for work (docs/architecture.md), not when it failed or is restarting."""
        triggers = [ON_DEMAND[unit] for unit in units if unit in ON_DEMAND]
        states = unit_states([*units, *triggers])
        return [
            unit
            for unit in units
            if states[unit].running
            or (unit in ON_DEMAND and states[unit].active == "inactive" and states[ON_DEMAND[unit]].running)
        ]

    def _systemctl(self, verb: str, units: Sequence[str]) -> None:
        systemctl = which("systemctl")
        if units and systemctl is not None:
            subprocess.run(  # noqa: S603 - systemctl with the agent's unit names
                [systemctl, verb, *units], capture_output=True, timeout=120, check=False
            )

    def stop(self, units: Sequence[str]) -> None:
        self._systemctl("stop", units)

    def start(self, units: Sequence[str]) -> None:
        self._systemctl("start", units)


def agent_status(port: int = HIMDS_PORT, timeout: float = 2.0) -> dict[str, Any] | None:
    """himds's ``/agentstatus`` (None when it does not answer)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request(
            "GET", f"/agentstatus?api-version={STATUS_API_VERSION}", headers={"Metadata": "true"}
        )
        reply = connection.getresponse()
        body = json.loads(reply.read(65536) or b"{}")
        return body if reply.status == 200 and isinstance(body, dict) else None
    except (OSError, ValueError, http.client.HTTPException):
        return None
    finally:
        connection.close()


def utc_now() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Upgrade:
    layout: Layout
    status_file: Path
    connected: bool
    """Whether the machine is connected (then a heartbeat of the new version must be accepted)."""
    services: Services = field(default_factory=Systemd)
    status: Callable[[], dict[str, Any] | None] = agent_status
    recover_script: Path = field(default_factory=lambda: Path(__file__).with_name("recover.sh"))
    poll: float = 0.5

    def install_recover(self) -> Path:
        """``<prefix>/recover``, outside every version (a copy, refreshed by every upgrade)."""
        target = self.layout.prefix / RECOVER
        write_atomic(target, self.recover_script.read_bytes(), mode=0o755)
        return target

    def health(self, running: Sequence[str], version: str, since: str, timeout: float) -> str:
        """ "" when the new version is healthy within ``timeout`` seconds, else what is wrong."""
        deadline = time.monotonic() + timeout
        while True:
            problems = [
                f"{unit} does not run" for unit in running if unit not in self.services.running([unit])
            ]
            if "himdsd.service" in running:
                status = self.status()
                if status is None:
                    problems.append("himds does not answer /agentstatus")
                elif status.get("agentVersion") != version:
                    problems.append(f"himds answers as version {status.get('agentVersion')}, not {version}")
                elif self.connected and str(status.get("lastHeartBeat") or "") < since:
                    problems.append("the control plane has not accepted a heartbeat of the new version")
            if not problems:
                return ""
            if time.monotonic() >= deadline:
                return "; ".join(problems) + f" (within {timeout:g} s)"
            time.sleep(self.poll)

    def record(self, version: str, status: str, message: str, correlation_id: str = "") -> dict[str, Any]:
        """The attempt as ARM has it (``lastAttempt*``), with the ``correlationId`` it answered
        (kept on the machine: extd does not start an answered request again)."""
        document = {
            "lastAttemptDesiredVersion": version,
            "lastAttemptStatus": status,
            "lastAttemptMessage": message,
            "lastAttemptTimestamp": utc_now(),
            **({"correlationId": correlation_id} if correlation_id else {}),
        }
        write_json_atomic(self.status_file, document, mode=0o644)
        return document

    def last_attempt(self) -> dict[str, Any]:
        return read_last_attempt(self.status_file)

    def run(self, name: str, timeout: float = 60.0, correlation_id: str = "") -> dict[str, Any]:
        """Make the staged version ``name`` current, checked; what happened (as recorded)."""
        layout = self.layout
        source, kept = layout.current(), layout.previous()
        if not source:
            raise AzcmError(
                ErrorCode.UPGRADE_FAILED,
                f"{layout.prefix} does not hold versions side by side; install the agent with the"
                " collection's arc_agent role (or agent_package) first",
            )
        version, before = (
            layout.record(name).get("version", name),
            layout.record(source).get("version", source),
        )
        if name == source:
            return {"changed": False, "from": before, "to": version}
        running = self.services.running(UNITS)
        self.install_recover()
        pending = {
            "from": source, "to": name, "previous": kept, "version": version, "services": " ".join(running),
            "pid": str(os.getpid()), "pidstart": process_start(os.getpid()), "boot": boot_id(),
            "correlation": correlation_id,
        }  # fmt: skip
        write_atomic(
            layout.prefix / PENDING, "".join(f"{k}={v}\n" for k, v in pending.items()).encode(), mode=0o644
        )
        since = utc_now()
        try:
            self.services.stop(running)
            layout.point(name, source)
            self.services.start(running)
            problem = self.health(running, version, since, timeout)
        except (OSError, subprocess.SubprocessError) as exc:
            problem = f"the switch failed: {exc}"
        if problem:
            self.services.stop(running)
            layout.point(source, kept)
            if name not in (source, kept):
                shutil.rmtree(layout.versions / name, ignore_errors=True)
            message = f"the upgrade to {version} failed its health check: {problem}; {before} runs again"
            self.record(
                version, "Failed", message, correlation_id
            )  # before the start: the first heartbeat reports it
            remove_if_present(layout.prefix / PENDING)
            self.services.start(running)
            raise AzcmError(ErrorCode.UPGRADE_FAILED, message)
        remove_if_present(layout.prefix / PENDING)
        layout.prune()
        self.record(version, "Success", f"upgraded from {before} to {version}", correlation_id)
        return {"changed": True, "from": before, "to": version}
