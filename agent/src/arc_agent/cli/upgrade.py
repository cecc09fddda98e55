"""``azcmagent upgrade``: this machine's agent to another version, checked, with the version it
came from back in place when the new one is not healthy (docs/agent-upgrade.md).

``--version MAJOR.MINOR`` (as the real agent; also a full version, or ``latest``) takes the
package from the control plane's agent package store, for this machine's target, checked against
its SHA-256 and the control plane's signature (``upgrade/store.py``). ``--package FILE --sha256
HEX`` names an agent package on the machine (an archive of the agent bundle for this machine's
Python, ``docs/agent-packages.md``) and its SHA-256. The package is checked and staged next to
the running version first (nothing changes when that fails); then the switch and its health
checks run in a transient systemd unit (``azcmagent-upgrade.service``) whose ``ExecStopPost`` is
the recovery script, so that an upgrade killed in the middle, or the command's own end, never
leaves a half-switched host. ``--background`` returns once the unit is started (extd uses it to
act on the control plane's ``agentUpgrade.desiredVersion``); the result is in ``show`` and in
``agentUpgrade.lastAttempt*``."""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

from arc_agent import __version__
from arc_agent.cli.context import Context
from arc_agent.cli.output import CommandResult
from arc_agent.config.connection import load_state
from arc_agent.cpclient.machine import open_machine_api
from arc_agent.errors import AzcmError, ErrorCode
from arc_agent.fsutil import flock_within
from arc_agent.systemd import which
from arc_agent.upgrade import store
from arc_agent.upgrade.layout import Layout
from arc_agent.upgrade.transaction import Upgrade, utc_now
from arc_agent.versions import version_key

UNIT = "azcmagent-upgrade"
LOCK = Path("/run/lock/hybridops-arc-agent-install.lock")
LOCK_WAIT_SECONDS = 60
MAX_TIMEOUT_SECONDS = 3600
DOWNLOADS = "upgrade-downloads"
"""Packages from the store wait here (beside upgrade-status.json) until staged, then go."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--version", metavar="VERSION",
        help="the version from the control plane's agent package store: 1.70 (the newest 1.70.x),"
        " a full version, or latest",
    )  # fmt: skip
    parser.add_argument(
        "--background", action="store_true",
        help="return once the upgrade has started (its result: 'azcmagent show', agentUpgrade in Azure)",
    )  # fmt: skip
    parser.add_argument(
        "--package", metavar="FILE", help="the agent package (an archive of the agent bundle)"
    )
    parser.add_argument(
        "--sha256", metavar="HEX", help="the package's SHA-256 (from the bundle's SHA256SUMS)"
    )
    parser.add_argument(
        "--timeout", type=float, default=60.0, metavar="SECONDS",
        help="how long the new version has to pass its health checks (default 60)",
    )  # fmt: skip
    parser.add_argument("--apply", metavar="VERSION_FOLDER", help=argparse.SUPPRESS)
    # ours (the collection's check mode): with --version, say what would happen; change nothing
    parser.add_argument("--check", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--correlation-id", type=_correlation_id, help=argparse.SUPPRESS)


def _correlation_id(value: str) -> str:
    """``agentUpgrade.correlationId`` (a GUID), recorded with the attempt so that it runs once."""
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value[:64]!r} is not a GUID") from None


def _upgrade(ctx: Context, layout: Layout) -> Upgrade:
    return Upgrade(layout, ctx.paths.upgrade_status, connected=load_state(ctx.paths.agent_config) is not None)


def upgrade(ctx: Context) -> CommandResult:
    if os.geteuid() != 0:
        raise AzcmError(ErrorCode.NOT_ELEVATED, "'azcmagent upgrade' must run as root (use sudo)")
    args = ctx.args
    layout = Layout(ctx.paths.install_dir)
    if args.apply:  # inside the transient unit
        result = _upgrade(ctx, layout).run(args.apply, args.timeout, args.correlation_id or "")
        return _result(result)
    if not 0 < args.timeout <= MAX_TIMEOUT_SECONDS:
        raise AzcmError(
            ErrorCode.INVALID_ARGUMENT,
            f"--timeout {args.timeout:g}: give the seconds the new version has to pass its health checks,"
            f" more than 0 and at most {MAX_TIMEOUT_SECONDS} (default 60)",
        )
    if args.check and not args.version:
        raise AzcmError(
            ErrorCode.INVALID_ARGUMENT, "--check goes with --version (it asks the control plane's store)"
        )
    if args.version and (args.package or args.sha256):
        raise AzcmError(
            ErrorCode.INVALID_ARGUMENT,
            "give --version (from the control plane's store) or --package and --sha256 (a file), not both",
        )
    if args.version:
        try:
            return _from_store(ctx, layout)
        except AzcmError as exc:
            if args.background:  # nobody waits for the answer: ARM gets it (agentUpgrade.lastAttempt*)
                _upgrade(ctx, layout).record(args.version, "Failed", exc.message, args.correlation_id or "")
            raise
    if not args.package or not args.sha256:
        raise AzcmError(
            ErrorCode.MISSING_MANDATORY_PARAMETER,
            "'azcmagent upgrade' needs --version VERSION (from the control plane's agent package store), or"
            " --package FILE and --sha256 HEX (the package's line in SHA256SUMS)",
        )
    with install_lock():
        return _stage_and_switch(ctx, layout, Path(args.package), args.sha256)


def _from_store(ctx: Context, layout: Layout) -> CommandResult:
    opened = open_machine_api(ctx.paths)
    if opened is None:
        raise AzcmError(
            ErrorCode.INVALID_ARGUMENT,
            f"--version {ctx.args.version} takes the agent from the control plane's store, and this machine"
            " is not connected: connect it first, or give --package FILE --sha256 HEX",
        )
    client, api = opened
    try:
        if ctx.args.check:
            chosen = str(store.choose(api, ctx.args.version)["version"])
            running = __version__
            same = version_key(chosen) == version_key(running)
            data = {"changed": not same, "from": running, "to": running if same else chosen}
            if same:
                return _result(data)
            return CommandResult(text=f"The agent would be upgraded from {running} to {chosen}", data=data)
        with install_lock():
            downloaded = store.download(api, ctx.args.version, ctx.paths.upgrade_status.parent / DOWNLOADS)
            try:
                return _stage_and_switch(ctx, layout, downloaded.path, downloaded.sha256)
            finally:
                downloaded.path.unlink(missing_ok=True)
    finally:
        client.close()


@contextlib.contextmanager
def install_lock() -> Iterator[None]:
    """The lock the collection's agent_package module takes too: one install or upgrade at a time."""
    path = LOCK if LOCK.parent.is_dir() else Path("/run") / LOCK.name
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o644)
    try:
        if not flock_within(fd, LOCK_WAIT_SECONDS, 0.2):
            raise AzcmError(
                ErrorCode.UPGRADE_FAILED,
                f"another install or upgrade of the agent runs (it holds {path}); let it finish",
            )
        yield
    finally:
        os.close(fd)


def _stage_and_switch(ctx: Context, layout: Layout, package: Path, sha256: str) -> CommandResult:
    args = ctx.args
    source = layout.current()
    if not source:
        raise AzcmError(
            ErrorCode.UPGRADE_FAILED,
            f"{layout.prefix} does not hold versions side by side; install the agent with the collection's"
            " arc_agent role (or agent_package) first",
        )
    layout.remove_leftovers()
    name = layout.stage(package, sha256)
    if name == source:
        version = layout.record(name).get("version", name)
        return CommandResult(text=f"The agent is at version {version} already", data={"changed": False,
                             "from": version, "to": version})  # fmt: skip
    systemd_run = which("systemd-run")
    if systemd_run is None or not Path("/run/systemd/system").is_dir():
        if args.background:
            raise AzcmError(
                ErrorCode.NOT_SUPPORTED, "--background needs systemd (it runs the upgrade as a unit)"
            )
        return _result(_upgrade(ctx, layout).run(name, args.timeout, args.correlation_id or ""))
    transaction = _upgrade(ctx, layout)
    recover = transaction.install_recover()
    runtime = layout.versions / source
    before = layout.record(source).get("version", source)
    argv = [
        systemd_run, f"--unit={UNIT}", "--collect", "--quiet", "--no-block" if args.background else "--wait",
        f"--property=ExecStopPost={recover}", "--setenv=LC_ALL=C",
        # the version it comes from runs the switch, from its own folder (not through current)
        str(runtime / "bin" / "python3"), str(runtime / "bin" / "azcmagent"), "upgrade",
        "--apply", name, "--timeout", f"{args.timeout:g}",
        *(["--correlation-id", args.correlation_id] if args.correlation_id else []),
    ]  # fmt: skip
    started = utc_now()
    done = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, check=False)  # noqa: S603
    if args.background:
        if done.returncode != 0:
            raise AzcmError(
                ErrorCode.UPGRADE_FAILED, f"the upgrade could not be started: {done.stderr.strip()[-500:]}"
            )
        to = layout.record(name).get("version", name)
        return CommandResult(
            text=f"The upgrade from {before} to {to} runs in the background ('azcmagent show' tells how it"
            " ended)",
            data={"changed": True, "from": before, "to": to, "background": True},
        )
    recorded = transaction.last_attempt()
    if recorded.get("lastAttemptTimestamp", "") < started:
        recorded = {}  # an earlier attempt's: this one recorded nothing
    if done.returncode != 0 or recorded.get("lastAttemptStatus") != "Success":
        said = recorded.get("lastAttemptMessage") or (
            f"the upgrade did not complete (exit code {done.returncode}): {done.stderr.strip()[-500:]}"
        )
        raise AzcmError(ErrorCode.UPGRADE_FAILED, f"{said} ('journalctl -u {UNIT}' has its log)")
    return _result({"changed": True, "from": before, "to": recorded.get("lastAttemptDesiredVersion")})


def _result(result: dict[str, object]) -> CommandResult:
    if not result.get("changed"):
        return CommandResult(text=f"The agent is at version {result['to']} already", data=result)
    return CommandResult(text=f"The agent was upgraded from {result['from']} to {result['to']}", data=result)
