"""Entry point of the ``gcad`` service (the machine configuration agent, docs/machine-configuration.md).

Its evaluations run in gcad's own cgroup (``gcad.service``), whose CPU quota follows
``guestconfiguration.agent.cpulimit`` (``systemctl set-property --runtime``, set at start and
again when the setting changes)."""

from __future__ import annotations

import faulthandler
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType

from arc_agent import __version__
from arc_agent.argparser import AzcmArgumentParser
from arc_agent.config.settings import LocalConfig
from arc_agent.errors import AzcmError, ErrorCode, service_main
from arc_agent.gcad.service import DEFAULT_INTERVAL_SECONDS, UNIT, GuestConfigService
from arc_agent.logsetup import configure_logging
from arc_agent.ondemand import service_parser
from arc_agent.paths import AgentPaths
from arc_agent.systemd import systemd_running

CPU_LIMIT = "guestconfiguration.agent.cpulimit"
INTERVAL_ENV = "GCAD_EVALUATION_INTERVAL_SECONDS"


def build_parser() -> AzcmArgumentParser:
    return service_parser("gcad", "Audit and enforce the machine's configuration assignments.")


def interval_from(environ: dict[str, str] | os._Environ[str]) -> float:
    value = environ.get(INTERVAL_ENV, "")
    if not value:
        return DEFAULT_INTERVAL_SECONDS
    try:
        seconds = float(value)
    except ValueError:
        seconds = 0
    if not 1 <= seconds <= 24 * 3600:
        raise AzcmError(ErrorCode.INVALID_ARGUMENT, f"{INTERVAL_ENV}={value!r}: give seconds, 1 to 86400")
    return seconds


def cpu_quota_keeper(settings_file: Path, run: Callable[[Sequence[str]], object]) -> Callable[[], None]:
    """A function that sets gcad's CPU quota from the setting when it differs from the last one set."""
    applied: dict[str, int] = {}

    def keep() -> None:
        value = LocalConfig.load(settings_file).get(CPU_LIMIT)
        limit = value if isinstance(value, int) and not isinstance(value, bool) else 5
        if applied.get("limit") != limit:
            run(["systemctl", "set-property", "--runtime", UNIT, f"CPUQuota={limit}%"])
            applied["limit"] = limit

    return keep


def _set_property(argv: Sequence[str]) -> None:
    subprocess.run(list(argv), check=False, capture_output=True, timeout=30)  # noqa: S603


def main(argv: Sequence[str] | None = None) -> int:
    """Run gcad with ``argv`` (default: ``sys.argv[1:]``); return the exit code."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    return service_main(args_list, lambda: _run(args_list))


def _run(args_list: list[str]) -> int:
    args = build_parser().parse_args(args_list)
    if args.version:
        sys.stdout.write(f"gcad version {__version__}\n")
        return 0
    paths = AgentPaths.from_env(os.environ)
    paths.guest_config_log.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    logger = configure_logging(verbose=args.verbose, stream=sys.stderr, log_file=paths.guest_config_log)
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    keeper = (
        cpu_quota_keeper(paths.local_config, _set_property)
        if systemd_running() and os.geteuid() == 0
        else (lambda: None)
    )
    service = GuestConfigService(
        paths, logger, interval=interval_from(os.environ), each_round=keeper, on_demand=args.on_demand
    )

    def stop(signum: int, frame: FrameType | None) -> None:
        service.close()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    service.run()
    return 0
