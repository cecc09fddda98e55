"""Entry point of the ``arcproxy`` service (``arcproxyd.service``, docs/gateway.md).

It checks what the Arc proxy needs before it carries anything: its arguments, the enterprise
proxy (``proxy.url``, else its environment's ``HTTPS_PROXY``), and the listeners on
localhost:40343; a problem is an AZCM error on stderr and the exit code. Then it replaces itself
(``exec``, same process) with :mod:`arc_agent.arcproxy.resident`, which carries the tunnels,
handing over the listeners and what it decided through a pipe: what checks the settings is not
what stays resident for as long as the machine is in gateway mode (docs/architecture.md,
"Footprint"). It writes nothing: it logs to stderr, which its unit appends to
``/var/opt/azcmagent/log/arcproxy.log`` (so its account needs no write access and no group of
the agent's).
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from arc_agent import __version__
from arc_agent.arcproxy.core import LISTEN_PORT
from arc_agent.arcproxy.service import listeners
from arc_agent.argparser import AzcmArgumentParser
from arc_agent.cpclient.outbound import proxy_policy
from arc_agent.errors import AzcmError, ErrorCode, service_main
from arc_agent.paths import AgentPaths

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import NoReturn


def build_parser() -> AzcmArgumentParser:
    parser = AzcmArgumentParser(
        prog="arcproxy",
        description="Carry the agent's traffic to its Arc gateway (listens on localhost:40343).",
        allow_abbrev=False,
    )
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("--port", type=int, default=LISTEN_PORT, help=argparse.SUPPRESS)  # for tests
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run arcproxy with ``argv`` (default: ``sys.argv[1:]``); return the exit code."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    return service_main(args_list, lambda: _run(args_list))


def _run(args_list: list[str]) -> int:
    args = build_parser().parse_args(args_list)
    if args.version:
        sys.stdout.write(f"arcproxy version {__version__}\n")
        return 0
    paths = AgentPaths.from_env(os.environ)
    upstream = proxy_policy(paths, upstream=True)
    try:
        sockets = listeners(args.port)
    except OSError as exc:
        raise AzcmError(
            ErrorCode.ARC_PROXY_NOT_RUNNING, f"cannot listen on localhost:{args.port}: {exc.strerror or exc}"
        ) from None
    proxy = upstream.proxy
    handover = {
        "listeners": [sock.fileno() for sock in sockets],
        "port": args.port,
        "verbose": args.verbose,
        "gateway_file": str(paths.gateway_file),
        "fallback_ca": str(paths.control_plane_ca),
        "upstream": None if proxy is None else {name: getattr(proxy, name) for name in proxy.__slots__},
        "no_proxy": upstream.no_proxy,
    }
    hand_over(handover, [sock.fileno() for sock in sockets])


def hand_over(handover: dict[str, object], descriptors: list[int]) -> NoReturn:
    """Replace this process with the resident Arc proxy: ``descriptors`` stay open in it, and
    ``handover`` reaches it through a pipe (never the command line: it may hold the proxy's
    credentials)."""
    read_end, write_end = os.pipe()
    os.write(write_end, json.dumps(handover).encode())  # far below a pipe's 64 KiB: no reader needed
    os.close(write_end)
    for descriptor in (*descriptors, read_end):
        os.set_inheritable(descriptor, True)
    flags = ["-I"] if sys.flags.isolated else []
    sys.stdout.flush()
    sys.stderr.flush()
    argv = [sys.executable, *flags, "-m", "arc_agent.arcproxy.resident", str(read_end)]
    os.execv(sys.executable, argv)  # noqa: S606 - our own interpreter and module; no shell


if __name__ == "__main__":
    sys.exit(main())
