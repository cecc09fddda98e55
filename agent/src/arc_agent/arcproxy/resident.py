"""The Arc proxy's resident process (docs/gateway.md; docs/architecture.md, "Footprint").

``arcproxy`` (:mod:`arc_agent.arcproxy.main`) checks the settings and opens the listeners, then
replaces itself with this module, handing over the listeners and what it decided through a pipe
whose descriptor is the one argument. The Arc proxy runs for as long as the machine is in
gateway mode, beside himds, and both count against the agent's footprint budget, so what stays
here is only what carries tunnels: no argument parser, no settings tables, no ``logging``
package (:class:`StderrLog` writes the agent's log format), no ``pathlib``.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import ssl
import sys
import threading
import time

from arc_agent import __version__
from arc_agent.arcproxy.core import GatewayFileError, GatewaySettings, load_gateway_text
from arc_agent.arcproxy.service import ArcProxy
from arc_agent.cpclient.proxy import ARC, Proxy, ProxyPolicy
from arc_agent.cpclient.tls import ssl_context


class StderrLog:
    """Lines in the agent's log format (``logsetup.LOG_FORMAT``: time, level, ``arc_agent``,
    message) on stderr, which the unit appends to ``log/arcproxy.log``."""

    def __init__(self, *, verbose: bool) -> None:
        self._verbose = verbose

    def _write(self, level: str, message: str, args: tuple[object, ...]) -> None:
        now = time.time()
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(now)) + f",{int(now % 1 * 1000):03d}"
        try:
            sys.stderr.write(f"{stamp} {level} arc_agent: {message % args if args else message}\n")
            sys.stderr.flush()
        except (OSError, ValueError):
            pass  # a log that cannot be written must not end a tunnel

    def debug(self, message: str, *args: object) -> None:
        if self._verbose:
            self._write("DEBUG", message, args)

    def info(self, message: str, *args: object) -> None:
        self._write("INFO", message, args)

    def warning(self, message: str, *args: object) -> None:
        self._write("WARNING", message, args)

    def error(self, message: str, *args: object) -> None:
        self._write("ERROR", message, args)


class GatewayFile:
    """``gateway.json`` and the TLS context for its gateway, read again when the file's time or
    size changes; None while there is none (or it cannot be used: logged). Tunnels' threads ask
    at once: one reads while the others wait for what it read."""

    def __init__(self, path: str, fallback_ca: str, log: StderrLog) -> None:
        self._path = path
        self._fallback_ca = fallback_ca
        self._log = log
        self._seen: tuple[int, int] | None = None
        self._current: tuple[GatewaySettings, ssl.SSLContext] | None = None
        self._lock = threading.Lock()

    def __call__(self) -> tuple[GatewaySettings, ssl.SSLContext] | None:
        with self._lock:
            return self._read()

    def _read(self) -> tuple[GatewaySettings, ssl.SSLContext] | None:
        try:
            stat = os.stat(self._path)
        except OSError:
            if self._seen is not None:
                self._log.warning("%s is gone: no gateway", self._path)
            self._seen, self._current = None, None
            return None
        key = (stat.st_mtime_ns, stat.st_size)
        if key != self._seen:
            self._seen = key
            try:
                with open(self._path, encoding="utf-8") as file:
                    settings = load_gateway_text(file.read())
                fallback = self._fallback_ca if os.path.exists(self._fallback_ca) else None
                self._current = (settings, ssl_context(fallback, settings.ca_certificate))
                self._log.info("Arc gateway %s at %s", settings.resource_id, settings.endpoint)
            except (OSError, ValueError, GatewayFileError) as exc:  # ssl.SSLError is an OSError
                self._current = None
                self._log.error("cannot use %s: %s", self._path, exc)
        return self._current


def _name_process(name: str) -> None:
    """Keep the name ``ps``, ``top`` and the kernel show (the interpreter's after the exec)."""
    try:
        with open("/proc/self/comm", "w", encoding="ascii") as comm:
            comm.write(name)
    except OSError:
        pass  # not Linux, or no /proc: only the name differs


class _Stopping(Exception):
    """SIGTERM or SIGINT came: the listeners close, the process ends."""


def _stop(signum: int, frame: object) -> None:
    raise _Stopping


def main(argv: list[str] | None = None) -> int:
    """Carry tunnels with what ``arcproxy`` handed over (the pipe named by the one argument)."""
    args = sys.argv[1:] if argv is None else argv
    try:
        with os.fdopen(int(args[0]), "rb") as pipe:
            handover = json.loads(pipe.read())
    except (IndexError, ValueError, OSError):
        from arc_agent.errors import AzcmError, ErrorCode  # only here: the resident need not keep it

        error = AzcmError(
            ErrorCode.INVALID_ARGUMENT,
            "arcproxy's resident is started by arcproxy, with what it hands over: run arcproxy",
        )
        sys.stderr.write(f"{error}\n")
        return error.code
    _name_process("arcproxy")
    log = StderrLog(verbose=bool(handover["verbose"]))
    given = handover["upstream"]
    upstream = ProxyPolicy(None if given is None else Proxy(**given), (), str(handover["no_proxy"]))

    def route_upstream(host: str) -> Proxy | None:
        return upstream.route(ARC, host)

    sockets = [socket.socket(fileno=descriptor) for descriptor in handover["listeners"]]
    proxy = ArcProxy(GatewayFile(handover["gateway_file"], handover["fallback_ca"], log), route_upstream, log)
    via = upstream.proxy.display if upstream.proxy else "no proxy"
    log.info("arcproxy %s listening on localhost:%d (upstream: %s)", __version__, handover["port"], via)
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, _stop)
    try:
        proxy.serve(sockets)
    except _Stopping:
        log.info("arcproxy stopping")
    finally:
        for sock in sockets:
            sock.close()
    return 0  # the tunnels' threads end with the process


if __name__ == "__main__":
    sys.exit(main())
