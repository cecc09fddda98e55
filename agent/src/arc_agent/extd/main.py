"""Entry point of the ``extd`` service (the extension service, docs/extensions.md)."""

from __future__ import annotations

import faulthandler
import os
import signal
import sys
from collections.abc import Sequence
from types import FrameType

from arc_agent import __version__
from arc_agent.argparser import AzcmArgumentParser
from arc_agent.errors import AzcmError, ErrorCode, service_main
from arc_agent.extd.governance import CpuGovernor, cpu_controller, cpu_limit_setting
from arc_agent.extd.records import Busy, exclusive
from arc_agent.extd.service import ExtensionService, installed_handlers
from arc_agent.logsetup import configure_logging
from arc_agent.ondemand import service_parser
from arc_agent.paths import AgentPaths
from arc_agent.systemd import systemd_running


def build_parser() -> AzcmArgumentParser:
    return service_parser("extd", "Run the machine's extensions as the control plane asks.")


def main(argv: Sequence[str] | None = None) -> int:
    """Run extd with ``argv`` (default: ``sys.argv[1:]``); return the exit code."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    return service_main(args_list, lambda: _run(args_list))


def _run(args_list: list[str]) -> int:
    args = build_parser().parse_args(args_list)
    if args.version:
        sys.stdout.write(f"extd version {__version__}\n")
        return 0
    paths = AgentPaths.from_env(os.environ)
    paths.extension_manager_log.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    logger = configure_logging(verbose=args.verbose, stream=sys.stderr, log_file=paths.extension_manager_log)
    faulthandler.register(signal.SIGUSR1, all_threads=True)

    if systemd_running() and os.geteuid() == 0:
        governor = CpuGovernor(cpu_limit_setting(paths.local_config))
        service = ExtensionService(paths, logger, governor, on_demand=args.on_demand)
        governor.adopt(installed_handlers(paths))
        governor.watch(service.stop)
        unenforced = cpu_controller()
        if unenforced:
            logger.warning("handlers get CPU quotas, but this host does not enforce them: %s", unenforced)
    else:
        logger.warning("no systemd or not root: handlers run without CPU quotas")
        service = ExtensionService(paths, logger, on_demand=args.on_demand)

    def stop(signum: int, frame: FrameType | None) -> None:
        service.close()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        with exclusive(paths.extension_state_dir):
            service.run()
    except Busy as busy:
        raise AzcmError(
            ErrorCode.EXTENSION_TOOL,
            f"the extension state is held by another process ({busy}): another extd, or "
            "'azcmagent extension remove'; let it finish",
        ) from None
    return 0
