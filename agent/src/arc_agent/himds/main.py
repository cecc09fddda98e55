"""Entry point of the ``himds`` service."""

from __future__ import annotations

import argparse
import faulthandler
import ipaddress
import logging
import os
import signal
import sys
import traceback
from collections.abc import Sequence

from arc_agent import __version__
from arc_agent.argparser import AzcmArgumentParser
from arc_agent.cpclient.proxy import ProxyError, policy
from arc_agent.errors import AzcmError, ErrorCode
from arc_agent.himds.api import HimdsApi, constant
from arc_agent.himds.server import listen, serve
from arc_agent.himds.service import HimdsService, heartbeat_service_statuses
from arc_agent.himds.tokens import control_plane_token_source
from arc_agent.himds.watch import StateFileWatch
from arc_agent.ipc import IpcServer
from arc_agent.logsetup import configure_logging
from arc_agent.metadata.cloud import CloudEndpoints, detect_cloud
from arc_agent.metadata.sysinfo import collect_system_info
from arc_agent.paths import AgentPaths

DEFAULT_BIND = "127.0.0.1"
DEFAULT_PORT = 40342  # docs/reference/himds.md


def loopback_address(value: str) -> str:
    """argparse type: an IP address on loopback (himds must never be reachable from outside)."""
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not an IP address") from None
    if not address.is_loopback:
        raise argparse.ArgumentTypeError(
            f"{value!r} is not a loopback address; himds listens on loopback only (127.0.0.0/8 or ::1)"
        )
    return str(address)


def port_number(value: str) -> int:
    """argparse type: a TCP port, 1-65535."""
    try:
        port = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a port number") from None
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{port} is not a port number (1-65535)")
    return port


def build_parser() -> AzcmArgumentParser:
    parser = AzcmArgumentParser(
        prog="himds",
        description="Serve the agent's local REST API on loopback.",
        allow_abbrev=False,
    )
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    parser.add_argument(
        "--bind",
        type=loopback_address,
        default=DEFAULT_BIND,
        help=f"loopback address to listen on (default {DEFAULT_BIND})",
    )
    parser.add_argument(
        "--port", type=port_number, default=DEFAULT_PORT, help=f"TCP port (default {DEFAULT_PORT})"
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging, one line per request")
    return parser


def run(paths: AgentPaths, bind: str, port: int, logger: logging.Logger) -> None:
    """himds: what this host is, once; the connection's worker; the socket; the local API."""
    server = listen(bind, port)
    system = collect_system_info()
    cloud = detect_cloud(CloudEndpoints.from_env(os.environ))
    facts = {"cloudProvider": cloud.provider, "manufacturer": system.manufacturer, "model": system.model}
    try:  # what show prints when proxy.url is empty
        environment_proxy = policy("", [], os.environ).proxy
    except ProxyError as exc:
        logger.error("%s; requests go through proxy.url or direct", exc)
        environment_proxy = None
    facts["environmentProxy"] = environment_proxy.display if environment_proxy else ""
    service = HimdsService(paths, heartbeat_service_statuses, logger, system.to_arm(cloud), facts)
    api = HimdsApi.for_host(
        __version__,
        paths,
        state=service.served_state,
        status=service.status.snapshot,
        system=constant(system),
        token_source=control_plane_token_source(service.identity_token),
    )
    service.on_reload = api.forget_tokens
    ipc = IpcServer(paths.himds_socket, service.handle_ipc, logger)
    ipc.start()
    watch = StateFileWatch(paths.agent_config, service.reload_if_changed, logger)
    try:
        service.reload()
        serve(server, api, logger)
    finally:
        watch.close()
        ipc.close()
        service.close()


def main(argv: Sequence[str] | None = None) -> int:
    """Run himds with ``argv`` (default: ``sys.argv[1:]``); return the exit code."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    verbose = "-v" in args_list or "--verbose" in args_list
    try:
        args = build_parser().parse_args(args_list)
        if args.version:
            sys.stdout.write(f"himds version {__version__}\n")
            return 0
        paths = AgentPaths.from_env(os.environ)
        logger = configure_logging(
            verbose=args.verbose, stream=sys.stderr, log_file=paths.log_dir / "himds.log"
        )
        # `kill -USR1` writes every thread's stack to stderr (the journal): what himds waits on
        faulthandler.register(signal.SIGUSR1, all_threads=True)
        run(paths, args.bind, args.port, logger)
        return 0
    except AzcmError as error:
        sys.stderr.write(f"{error}\n")
        return error.code
    except Exception as exc:
        if verbose:
            traceback.print_exc(file=sys.stderr)
        sys.stderr.write(f"{AzcmError(ErrorCode.UNKNOWN, f'unexpected error: {exc}')}\n")
        return int(ErrorCode.UNKNOWN)


if __name__ == "__main__":
    sys.exit(main())
