"""Entry point of the ``arcproxy`` service (``arcproxyd.service``, docs/gateway.md).

It reads the machine's gateway from ``gateway.json`` (again whenever the file changes), trusts
the control plane's CA for the gateway's TLS, and takes the enterprise proxy from ``proxy.url``
or its environment's ``HTTPS_PROXY``. It writes nothing: it logs to stderr, which its unit
appends to ``/var/opt/azcmagent/log/arcproxy.log`` (so its account needs no write access and no
group of the agent's).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import socket
import ssl
import sys
from collections.abc import Sequence
from pathlib import Path

from arc_agent import __version__
from arc_agent.arcproxy.core import LISTEN_PORT, GatewaySettings, load_gateway_text
from arc_agent.arcproxy.service import ArcProxy, listeners
from arc_agent.argparser import AzcmArgumentParser
from arc_agent.cpclient.machine import proxy_policy
from arc_agent.cpclient.proxy import ARC, Proxy
from arc_agent.cpclient.transport import tls_context
from arc_agent.errors import AzcmError, ErrorCode, service_main
from arc_agent.logsetup import configure_logging
from arc_agent.paths import AgentPaths


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


class GatewayFile:
    """``gateway.json`` and the TLS context for its gateway, read again when the file's time or
    size changes; None while there is none (or it cannot be used: logged)."""

    def __init__(self, path: Path, fallback_ca: Path, log: logging.Logger) -> None:
        self._path = path
        self._fallback_ca = fallback_ca
        self._log = log
        self._seen: tuple[int, int] | None = None
        self._current: tuple[GatewaySettings, ssl.SSLContext] | None = None

    def __call__(self) -> tuple[GatewaySettings, ssl.SSLContext] | None:
        try:
            stat = self._path.stat()
        except OSError:
            if self._seen is not None:
                self._log.warning("%s is gone: no gateway", self._path)
            self._seen, self._current = None, None
            return None
        key = (stat.st_mtime_ns, stat.st_size)
        if key != self._seen:
            self._seen = key
            try:
                settings = load_gateway_text(self._path.read_text(encoding="utf-8"))
                self._current = (settings, self._context(settings))
                self._log.info("Arc gateway %s at %s", settings.resource_id, settings.endpoint)
            except (OSError, ssl.SSLError, ValueError, AzcmError) as exc:
                self._current = None
                self._log.error("cannot use %s: %s", self._path, exc)
        return self._current

    def _context(self, settings: GatewaySettings) -> ssl.SSLContext:
        if settings.ca_certificate:
            context = ssl.create_default_context(cadata=settings.ca_certificate)
            context.minimum_version = ssl.TLSVersion.TLSv1_2
            return context
        return tls_context(self._fallback_ca if self._fallback_ca.exists() else None)


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
    logger = configure_logging(verbose=args.verbose, stream=sys.stderr)
    upstream_policy = proxy_policy(paths, upstream=True)

    def upstream(host: str) -> Proxy | None:
        return upstream_policy.route(ARC, host)

    try:
        sockets = listeners(args.port)
    except OSError as exc:
        raise AzcmError(
            ErrorCode.ARC_PROXY_NOT_RUNNING, f"cannot listen on localhost:{args.port}: {exc.strerror or exc}"
        ) from None
    proxy = ArcProxy(GatewayFile(paths.gateway_file, paths.control_plane_ca, logger), upstream, logger)
    via = upstream_policy.proxy.display if upstream_policy.proxy else "no proxy"
    logger.info("arcproxy %s listening on localhost:%d (upstream: %s)", __version__, args.port, via)
    asyncio.run(_serve(proxy, sockets))
    return 0


async def _serve(proxy: ArcProxy, sockets: list[socket.socket]) -> None:
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    await proxy.start(sockets)
    await stopping.wait()
    await proxy.close()


if __name__ == "__main__":
    sys.exit(main())
