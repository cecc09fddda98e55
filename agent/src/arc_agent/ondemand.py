"""Services started on demand (docs/architecture.md, "Services started on demand").

An idle machine runs one agent process: himds. extd and gcad run while they have work and end
when they have none, so that the agent's footprint is himds's (DESIGN.md's budget: every agent
service together at most 30 MB, where three resident Python services that speak TLS cannot go
under about 21 MiB before any code of their own).

- himds holds the machine's one long-poll on the control plane. When there is work for the other
  services (a new generation, its own start, the control plane back after an outage) it writes
  their *wake files*, ``/var/opt/azcmagent/wake/extd`` and ``.../gcad`` (``wake``); for a new
  generation, only those of the services the work is for (``with_work``: the self-read says the
  generation of each service's last work);
- systemd's path units (``extd.path``, ``gcad.path``: ``PathExists=``) start the service while its
  file exists. The service takes the file (``take``) before it reads its work: a wake written
  while it runs is seen by it, or starts it again once it ended (systemd looks at ``PathExists=``
  again when the service stops), so no wake is lost;
- a service ends when it has nothing to do for a while (its ``linger``); gcad first arms a
  transient timer for its next evaluation (``arm``: ``gcad.timer``, ``systemd-run --on-active``),
  which systemd keeps while no process of the agent runs (part of ``gcad.path``: stopped with it).

A service runs this way when its unit says so (``--on-demand``); started by hand or by tests
without it, it stays until stopped.
"""

from __future__ import annotations

import logging
import math
import os
import subprocess
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path

from arc_agent.argparser import AzcmArgumentParser
from arc_agent.paths import AgentPaths
from arc_agent.systemd import ON_DEMAND, which

EXTENSION_SERVICE = "extd"
CONFIGURATION_SERVICE = "gcad"
SERVICES = (EXTENSION_SERVICE, CONFIGURATION_SERVICE)
"""The services himds wakes (their wake files and path units have these names)."""


def wake_file(paths: AgentPaths, service: str) -> Path:
    return paths.wake_dir / service


def wake(paths: AgentPaths, why: str, services: Iterable[str] = SERVICES) -> list[str]:
    """Write the wake files of ``services`` (saying ``why``); the services woken. Without the wake
    directory (an agent not set up by the role: no path units either) nothing is written."""
    woken = []
    for service in services:
        try:
            descriptor = os.open(wake_file(paths, service), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640)
        except OSError:
            continue
        try:
            os.write(descriptor, why.encode("utf-8", "replace")[:500] + b"\n")
        finally:
            os.close(descriptor)
        woken.append(service)
    return woken


def with_work(before: Mapping[str, int] | None, after: Mapping[str, int] | None) -> tuple[str, ...]:
    """The services that have new work: those whose generation in the machine's self-read
    (``after``, see ``generations_of``) moved since ``before`` (the last one himds saw). All of
    them when either is not known (the first read since himds started, a control plane that does
    not say): a wake too many costs a start, a wake missed loses work."""
    if before is None or after is None:
        return SERVICES
    return tuple(service for service in SERVICES if after.get(service) != before.get(service))


def generations_of(value: object) -> dict[str, int] | None:
    """The self-read's ``serviceGenerations`` when it has a whole number for each service, else None."""
    if not isinstance(value, dict):
        return None
    found: dict[str, int] = {}
    for service in SERVICES:
        number = value.get(service)
        if not isinstance(number, int) or isinstance(number, bool):
            return None
        found[service] = number
    return found


def take(paths: AgentPaths, service: str) -> str | None:
    """Remove ``service``'s wake file before its work is read; why it was woken, or None."""
    path = wake_file(paths, service)
    try:
        why = path.read_text(encoding="utf-8", errors="replace").strip()
        path.unlink()
    except FileNotFoundError:
        return None
    except OSError as exc:
        return f"(wake file unreadable: {exc})"
    return why


def woken(paths: AgentPaths, service: str, logger: logging.Logger) -> bool:
    """``take``, logged: whether ``service`` was woken (new work since it looked last)."""
    why = take(paths, service)
    if why is not None:
        logger.info("woken: %s", why)
    return why is not None


def service_parser(prog: str, description: str) -> AzcmArgumentParser:
    """The command line of a service started on demand (extd, gcad)."""
    parser = AzcmArgumentParser(prog=prog, description=description, allow_abbrev=False)
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument(
        "--on-demand",
        action="store_true",
        help="end when there is nothing to do: himds's wake file and systemd start it again (its unit)",
    )
    return parser


Runner = Callable[[Sequence[str]], "subprocess.CompletedProcess[str]"]


def _run(argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), capture_output=True, text=True, timeout=30, check=False)  # noqa: S603


def timer_of(unit: str) -> str:
    return unit[: -len(".service")] + ".timer" if unit.endswith(".service") else unit + ".timer"


def arm(unit: str, seconds: float, run: Runner = _run) -> str:
    """Start ``unit`` in ``seconds`` (a transient timer of the same name, replacing one armed
    before, and part of the unit's path unit: stopping that, when the service is turned off or
    uninstalled, takes the timer away too); "" when armed, else what systemd said."""
    systemctl = which("systemctl") or "/usr/bin/systemctl"
    systemd_run = which("systemd-run") or "/usr/bin/systemd-run"
    run([systemctl, "stop", timer_of(unit)])
    done = run(
        [
            systemd_run, "--quiet", f"--on-active={max(1, math.ceil(seconds))}s", f"--unit={unit}",
            "--timer-property=AccuracySec=1s", "--timer-property=RemainAfterElapse=no",
            *([f"--timer-property=PartOf={ON_DEMAND[unit]}"] if unit in ON_DEMAND else []),
        ]
    )  # fmt: skip
    return "" if done.returncode == 0 else (done.stderr.strip() or f"systemd-run exited {done.returncode}")


def disarm(unit: str, run: Runner = _run) -> None:
    """The timer ``arm`` set for ``unit``, if any, taken away."""
    run([which("systemctl") or "/usr/bin/systemctl", "stop", timer_of(unit)])
