"""``azcmagent upgrade``: this machine's agent to another version, checked, with the version it
came from back in place when the new one is not healthy (docs/agent-upgrade.md).

``--package FILE --sha256 HEX`` names an agent package (an archive of the agent bundle for this
machine's Python, ``docs/agent-packages.md``) and its SHA-256. The package is checked and staged
next to the running version first (nothing changes when that fails); then the switch and its
health checks run in a transient systemd unit (``azcmagent-upgrade.service``) whose
``ExecStopPost`` is the recovery script, so that an upgrade killed in the middle, or the
command's own end, never leaves a half-switched host. Real agents take ``--version MAJOR.MINOR``
from Microsoft's repository; packages from the control plane's store come with issue 15's next
part."""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

from arc_agent.cli.context import Context
from arc_agent.cli.output import CommandResult
from arc_agent.config.connection import load_state
from arc_agent.errors import AzcmError, ErrorCode
from arc_agent.fsutil import flock_within
from arc_agent.systemd import which
from arc_agent.upgrade.layout import Layout
from arc_agent.upgrade.transaction import Upgrade, utc_now

UNIT = "azcmagent-upgrade"
LOCK = Path("/run/lock/hybridops-arc-agent-install.lock")
LOCK_WAIT_SECONDS = 60
MAX_TIMEOUT_SECONDS = 3600


def add_arguments(parser: argparse.ArgumentParser) -> None:
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


def _upgrade(ctx: Context, layout: Layout) -> Upgrade:
    return Upgrade(layout, ctx.paths.upgrade_status, connected=load_state(ctx.paths.agent_config) is not None)


def upgrade(ctx: Context) -> CommandResult:
    if os.geteuid() != 0:
        raise AzcmError(ErrorCode.NOT_ELEVATED, "'azcmagent upgrade' must run as root (use sudo)")
    args = ctx.args
    layout = Layout(ctx.paths.install_dir)
    if args.apply:  # inside the transient unit
        result = _upgrade(ctx, layout).run(args.apply, args.timeout)
        return _result(result)
    if not 0 < args.timeout <= MAX_TIMEOUT_SECONDS:
        raise AzcmError(
            ErrorCode.INVALID_ARGUMENT,
            f"--timeout {args.timeout:g}: give the seconds the new version has to pass its health checks,"
            f" more than 0 and at most {MAX_TIMEOUT_SECONDS} (default 60)",
        )
    if not args.package or not args.sha256:
        raise AzcmError(
            ErrorCode.MISSING_MANDATORY_PARAMETER,
            "'azcmagent upgrade' needs --package FILE and --sha256 HEX (the package's line in SHA256SUMS)",
        )
    with install_lock():
        return _stage_and_switch(ctx, layout)


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


def _stage_and_switch(ctx: Context, layout: Layout) -> CommandResult:
    args = ctx.args
    source = layout.current()
    if not source:
        raise AzcmError(
            ErrorCode.UPGRADE_FAILED,
            f"{layout.prefix} does not hold versions side by side; install the agent with the collection's"
            " arc_agent role (or agent_package) first",
        )
    layout.remove_leftovers()
    name = layout.stage(Path(args.package), args.sha256)
    if name == source:
        version = layout.record(name).get("version", name)
        return CommandResult(text=f"The agent is at version {version} already", data={"changed": False,
                             "from": version, "to": version})  # fmt: skip
    systemd_run = which("systemd-run")
    if systemd_run is None or not Path("/run/systemd/system").is_dir():
        return _result(_upgrade(ctx, layout).run(name, args.timeout))
    transaction = _upgrade(ctx, layout)
    recover = transaction.install_recover()
    runtime = layout.versions / source
    before = layout.record(source).get("version", source)
    argv = [
        systemd_run, f"--unit={UNIT}", "--collect", "--quiet", "--wait",
        f"--property=ExecStopPost={recover}", "--setenv=LC_ALL=C",
        # the version it comes from runs the switch, from its own folder (not through current)
        str(runtime / "bin" / "python3"), str(runtime / "bin" / "azcmagent"), "upgrade",
        "--apply", name, "--timeout", f"{args.timeout:g}",
    ]  # fmt: skip
    started = utc_now()
    done = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, check=False)  # noqa: S603
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
