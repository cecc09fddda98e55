"""Upgrades the control plane asks for (docs/agent-upgrade.md, "From the control plane" and
"Automatic upgrades"): the machine's ``agentUpgrade.desiredVersion`` (with its ``correlationId``),
or the version the automatic rollout offers it, read by extd (root) with the machine's own
resource, started as ``azcmagent upgrade --version V --background``.

A request is answered once: the attempt is recorded with its correlation id (``upgrade-status.json``),
and the same version and correlation id are not tried again, whether the attempt succeeded or
failed; the operator asks again with a new ``correlationId``."""

from __future__ import annotations

import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from arc_agent.versions import version_key


@dataclass(frozen=True)
class Request:
    version: str
    correlation_id: str


def wanted(
    agent_upgrade: Any, running: str, last_attempt: Mapping[str, Any], offered: Any = None
) -> Request | None:
    """The upgrade to start now, if any. Pure.

    - ``desiredVersion`` (a full version, or ``1.65`` for the newest 1.65.x), when the running
      version is not it and it was not attempted with the same ``correlationId`` already; while
      the operator names a version, it is the version (automatic upgrades wait);
    - else ``offered``, the version the control plane's automatic rollout offers (only to machines
      with ``enableAutomaticUpgrade``), when newer than the running one and not attempted yet.
    """
    if not isinstance(agent_upgrade, Mapping):
        return None
    desired = str(agent_upgrade.get("desiredVersion") or "")
    if desired:
        return _new_work(
            desired, str(agent_upgrade.get("correlationId") or "").lower(), running, last_attempt
        )
    if isinstance(offered, str) and version_key(offered) > version_key(running):
        return _new_work(offered, "", running, last_attempt)
    return None


def _new_work(
    version: str, correlation: str, running: str, last_attempt: Mapping[str, Any]
) -> Request | None:
    key = version_key(version)
    if not key or version_key(running)[: len(key)] == key:  # 1.65 asks for any 1.65.x
        return None
    attempted = version_key(str(last_attempt.get("lastAttemptDesiredVersion") or ""))
    if attempted == key and str(last_attempt.get("correlationId") or "").lower() == correlation:
        return None
    return Request(version, correlation)


def start(azcmagent: Path, request: Request, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """``azcmagent upgrade --version V --background``: downloads, checks and stages the version,
    starts the switch in its own unit (which stops extd too) and returns."""
    argv = [str(azcmagent), "upgrade", "--version", request.version, "--background"]
    if request.correlation_id:
        argv += ["--correlation-id", request.correlation_id]
    return subprocess.run(  # noqa: S603 - the agent's own CLI
        argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, check=False, timeout=timeout
    )
