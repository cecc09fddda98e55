"""Entry point of the ``himds`` service."""

from __future__ import annotations

import argparse
import ipaddress
import sys
import traceback
from collections.abc import Sequence

from arc_agent import __version__
from arc_agent.argparser import AzcmArgumentParser
from arc_agent.errors import AzcmError, ErrorCode
from arc_agent.himds.api import HimdsApi
from arc_agent.himds.server import serve
from arc_agent.logsetup import configure_logging

DEFAULT_BIND = "127.0.0.1"
DEFAULT_PORT = 40342  # reference §2


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


def main(argv: Sequence[str] | None = None) -> int:
    """Run himds with ``argv`` (default: ``sys.argv[1:]``); return the exit code."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    verbose = "-v" in args_list or "--verbose" in args_list
    try:
        args = build_parser().parse_args(args_list)
        if args.version:
            sys.stdout.write(f"himds version {__version__}\n")
            return 0
        logger = configure_logging(verbose=args.verbose, stream=sys.stderr)
        serve(HimdsApi(__version__), args.bind, args.port, logger)
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
