"""The ``arc-controlplane`` command: ``serve``, ``ca show``, ``--version``, and the admin
commands ``init``, ``sp``, ``role``, ``audit`` and ``machine`` (``admin/commands.py``)."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import NoReturn

from arc_controlplane import __version__
from arc_controlplane.admin.parsers import add_admin_commands
from arc_controlplane.errors import ControlPlaneError, UsageError
from arc_controlplane.names import parse_name
from arc_controlplane.pki import read_ca_certificate
from arc_controlplane.settings import (
    DATA_DIR_ENV_VAR,
    DEFAULT_AUDIT_RETENTION_DAYS,
    DEFAULT_BIND,
    DEFAULT_EXTENSION_OPERATION_TIMEOUT_SECONDS,
    DEFAULT_MAX_CONNECTIONS_PER_ADDRESS,
    DEFAULT_PORT,
    SYSTEM_DATA_DIR,
    ConnectionPolicy,
    ExternalTls,
    ServerSettings,
    current_default_data_dir,
    pki_dir_of,
)
from arc_controlplane.timing import (
    DEFAULT_HEARTBEAT_INTERVAL_SECONDS,
    DISCONNECTED_AFTER_INTERVALS,
    MAX_HEARTBEAT_INTERVAL_SECONDS,
    MIN_HEARTBEAT_INTERVAL_SECONDS,
    Timing,
)

PROG = "arc-controlplane"
PRIVATE_UMASK = 0o077
MAX_AUDIT_RETENTION_DAYS = 36500
MAX_CONNECTIONS = 1_000_000
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
DATA_DIR_HELP = (
    f"data directory (default: ${DATA_DIR_ENV_VAR} if set, else {SYSTEM_DATA_DIR} when running "
    "as root, else ~/.local/share/arc-controlplane)"
)


DATABASE_URL_HELP = (
    "database: sqlite:///PATH (default: DATA_DIR/controlplane.db) or postgresql+psycopg://USER@HOST/DB"
)


class StopRequested(Exception):
    """SIGTERM arrived: stop and exit 0."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def _port(value: str) -> int:
    try:
        port = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a port number") from None
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{port} is not a port number (1-65535)")
    return port


def _name(value: str) -> str:
    try:
        return str(parse_name(value))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _domain(value: str) -> str:
    try:
        parsed = parse_name(value)
    except ValueError:
        parsed = ""
    if not isinstance(parsed, str) or "." not in parsed or parsed.startswith("*"):
        raise argparse.ArgumentTypeError(f"{value!r} is not a DNS domain (e.g. arc.example.com)")
    return parsed


def _heartbeat_interval(value: str) -> int:
    try:
        seconds = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{value!r} is not a number of seconds: use a whole number from {MIN_HEARTBEAT_INTERVAL_SECONDS} "
            f"to {MAX_HEARTBEAT_INTERVAL_SECONDS}"
        ) from None
    try:
        Timing.every(seconds)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return seconds


MAX_EXTENSION_OPERATION_TIMEOUT_SECONDS = 7 * 24 * 3600


def _retention_days(value: str) -> int:
    if not value.strip().isdigit() or not 1 <= int(value) <= MAX_AUDIT_RETENTION_DAYS:
        raise argparse.ArgumentTypeError(
            f"{value!r} is not a number of days: use a whole number from 1 to {MAX_AUDIT_RETENTION_DAYS}"
        )
    return int(value)


def _extension_timeout(value: str) -> int:
    if not value.strip().isdigit() or not 1 <= int(value) <= MAX_EXTENSION_OPERATION_TIMEOUT_SECONDS:
        raise argparse.ArgumentTypeError(
            f"{value!r} is not a number of seconds: use a whole number from 1 to "
            f"{MAX_EXTENSION_OPERATION_TIMEOUT_SECONDS}"
        )
    return int(value)


def _connections(value: str) -> int:
    if not value.strip().isdigit() or not 1 <= int(value) <= MAX_CONNECTIONS:
        raise argparse.ArgumentTypeError(
            f"{value!r} is not a number of connections from 1 to {MAX_CONNECTIONS}"
        )
    return int(value)


def _directory(value: str) -> Path:
    if not value.strip():
        raise argparse.ArgumentTypeError("an empty path is not a directory")
    return Path(value).expanduser()


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog=PROG, description="The hybridops.arc control plane.", allow_abbrev=False)
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    serve = commands.add_parser(
        "serve",
        help="serve the control plane over HTTPS",
        description=(
            "Serve the control plane over HTTPS. Without --cert/--key, a CA of its own and a server "
            "certificate signed by it are created in DATA_DIR/pki on first start and reused later; "
            "clients trust DATA_DIR/pki/ca.pem (see 'arc-controlplane ca show')."
        ),
        allow_abbrev=False,
    )
    serve.add_argument("--data-dir", type=_directory, metavar="DIR", help=DATA_DIR_HELP)
    serve.add_argument(
        "--bind", type=_name, default=DEFAULT_BIND, metavar="ADDR", help=f"address (default {DEFAULT_BIND})"
    )
    serve.add_argument("--port", type=_port, default=DEFAULT_PORT, help=f"TCP port (default {DEFAULT_PORT})")
    serve.add_argument("--cert", type=Path, metavar="FILE", help="PEM server certificate to use as it is")
    serve.add_argument("--key", type=Path, metavar="FILE", help="PEM private key of --cert (unencrypted)")
    serve.add_argument(
        "--database-url",
        metavar="URL",
        help=DATABASE_URL_HELP,
    )
    serve.add_argument(
        "--public-url",
        metavar="URL",
        help="how clients reach this server, e.g. https://cp.example:8443 (default: https://BIND:PORT)",
    )
    serve.add_argument(
        "--san",
        type=_name,
        action="append",
        default=[],
        metavar="NAME",
        help="extra DNS name or IP address for the generated server certificate (repeatable)",
    )
    serve.add_argument(
        "--heartbeat-interval",
        type=_heartbeat_interval,
        default=DEFAULT_HEARTBEAT_INTERVAL_SECONDS,
        metavar="SECONDS",
        help=(
            f"how often agents heartbeat, {MIN_HEARTBEAT_INTERVAL_SECONDS}-{MAX_HEARTBEAT_INTERVAL_SECONDS} "
            f"(default {DEFAULT_HEARTBEAT_INTERVAL_SECONDS}); a machine shows Disconnected after "
            f"{DISCONNECTED_AFTER_INTERVALS} intervals without one. Short values are for tests"
        ),
    )

    serve.add_argument(
        "--extension-operation-timeout",
        type=_extension_timeout,
        default=DEFAULT_EXTENSION_OPERATION_TIMEOUT_SECONDS,
        metavar="SECONDS",
        help=(
            "how long an extension change waits for the machine before it fails (default "
            f"{DEFAULT_EXTENSION_OPERATION_TIMEOUT_SECONDS}, Azure's 6 hours); short values are for tests"
        ),
    )
    serve.add_argument(
        "--audit-retention-days",
        type=_retention_days,
        default=DEFAULT_AUDIT_RETENTION_DAYS,
        metavar="DAYS",
        help=(
            f"how long audit entries are kept, 1-{MAX_AUDIT_RETENTION_DAYS} "
            f"(default {DEFAULT_AUDIT_RETENTION_DAYS})"
        ),
    )

    serve.add_argument(
        "--max-connections-per-address",
        type=_connections,
        default=DEFAULT_MAX_CONNECTIONS_PER_ADDRESS,
        metavar="N",
        help=(
            "connections one client address may hold at once "
            f"(default {DEFAULT_MAX_CONNECTIONS_PER_ADDRESS}: an Arc gateway's agents share one address)"
        ),
    )

    serve.add_argument(
        "--gateway-port",
        type=_port,
        metavar="PORT",
        help=(
            "also run the Arc gateway service on this port (same address and certificate); without it "
            "no gateway can be created (docs/gateway.md)"
        ),
    )

    serve.add_argument(
        "--endpoint-domain",
        type=_domain,
        metavar="DOMAIN",
        help=(
            "also serve each service under its own name in DOMAIN (login.DOMAIN, management.DOMAIN,"
            " gbl.his.DOMAIN, ...; in the generated certificate) for proxies and gateways to tell"
            " them apart (docs/endpoints.md)"
        ),
    )

    store = _Parser(add_help=False)
    store.add_argument("--data-dir", type=_directory, metavar="DIR", help=DATA_DIR_HELP)
    store.add_argument("--database-url", metavar="URL", help=DATABASE_URL_HELP)
    add_admin_commands(commands, store, port_type=_port, name_type=_name, interval_type=_heartbeat_interval)

    ca = commands.add_parser("ca", help="the control plane's CA", allow_abbrev=False)
    ca_commands = ca.add_subparsers(dest="ca_command", metavar="COMMAND", required=True)
    show = ca_commands.add_parser("show", help="print the CA certificate (PEM)", allow_abbrev=False)
    show.add_argument("--data-dir", type=_directory, metavar="DIR", help=DATA_DIR_HELP)
    return parser


def settings_from_args(args: argparse.Namespace) -> ServerSettings:
    if (args.cert is None) != (args.key is None):
        raise UsageError("--cert and --key must be given together")
    if args.gateway_port is not None and args.gateway_port == args.port:
        raise UsageError(
            f"--gateway-port {args.gateway_port} is the API's port too: give the gateway its own"
        )
    if args.cert is not None and args.san:
        raise UsageError("--san names go into the generated certificate; it cannot be used with --cert")
    external = ExternalTls(args.cert, args.key) if args.cert is not None else None
    return ServerSettings(
        data_dir=args.data_dir or current_default_data_dir(),
        bind=args.bind,
        port=args.port,
        external_tls=external,
        extra_names=tuple(args.san),
        endpoint_domain=args.endpoint_domain or "",
        database_url=args.database_url,
        public_url=args.public_url,
        heartbeat_interval=args.heartbeat_interval,
        audit_retention_days=args.audit_retention_days,
        extension_operation_timeout=args.extension_operation_timeout,
        connections=ConnectionPolicy(max_per_address=args.max_connections_per_address),
        gateway_port=args.gateway_port,
    )


@contextmanager
def _sigterm_stops() -> Iterator[None]:
    def request_stop(signum: int, frame: FrameType | None) -> None:
        raise StopRequested

    previous = signal.signal(signal.SIGTERM, request_stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run(args: argparse.Namespace) -> None:
    # Whatever the control plane creates (database, keys, WAL files, state) is its own: private
    # from the moment it exists, whatever the mode of the directory it is created in.
    os.umask(PRIVATE_UMASK)
    if getattr(args, "admin_command", None):
        # Imported here, like the server below: --help and --version need no database code.
        from arc_controlplane.admin.commands import run_admin

        run_admin(args)
    elif args.command == "serve":
        settings = settings_from_args(args)
        logging.basicConfig(level=logging.INFO, format=LOG_FORMAT, stream=sys.stderr)
        # Imported here so that `ca show` and `--help` stay fast (no FastAPI, no uvicorn).
        from arc_controlplane.server.serve import serve

        with _sigterm_stops():
            serve(settings)
    elif args.command == "ca" and args.ca_command == "show":
        data_dir = args.data_dir or current_default_data_dir()
        sys.stdout.buffer.write(read_ca_certificate(pki_dir_of(data_dir)))
        sys.stdout.flush()


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``arc-controlplane``; return the exit code (2 usage, 1 runtime error, 0 otherwise)."""
    try:
        run(build_parser().parse_args(argv))
    except UsageError as exc:
        sys.stderr.write(f"{PROG}: error: {exc}\n")
        return 2
    except ControlPlaneError as exc:
        sys.stderr.write(f"{PROG}: error: {exc}\n")
        return 1
    except (StopRequested, KeyboardInterrupt):
        return 0
    return 0
