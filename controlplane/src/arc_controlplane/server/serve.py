"""Runs the application over HTTPS with uvicorn on a socket we bind ourselves.

Binding first turns "address in use" and similar into one clear error instead of uvicorn's
log-and-exit, and lets the start-up log line name the real address.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import os
import socket
import ssl
import urllib.parse

import uvicorn
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from arc_controlplane import __version__
from arc_controlplane.app import create_app
from arc_controlplane.auth.keys import load_or_create_package_key, load_or_create_signing_key
from arc_controlplane.auth.tokens import TokenIssuer
from arc_controlplane.db.engine import Database, validate_database_url
from arc_controlplane.db.migrate import upgrade
from arc_controlplane.endpoints import Endpoints
from arc_controlplane.errors import ControlPlaneError
from arc_controlplane.fsutil import ensure_private_dir
from arc_controlplane.http.context import AppContext
from arc_controlplane.machines.notify import Notifier
from arc_controlplane.names import server_names
from arc_controlplane.pki import ServerTls, check_covers, check_key_pair, ensure_server_tls
from arc_controlplane.server.connections import guarded_protocol, raise_file_limit
from arc_controlplane.server.gateway import GatewayService, upstream_of
from arc_controlplane.settings import ConnectionPolicy, ServerSettings

LOG = logging.getLogger(__name__)
GRACEFUL_SHUTDOWN_SECONDS = 5
TLS12_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20"
"""TLS 1.2 suites: forward secret and AEAD only (no CBC, no RSA key exchange); what Microsoft
requires of the Arc agent's TLS 1.2 connections too (docs/reference). TLS 1.3's are all AEAD."""


def prepare_data_dir(settings: ServerSettings) -> None:
    """The data directory, private to this user (narrowed, with a warning, if it was not)."""
    try:
        if ensure_private_dir(settings.data_dir):
            LOG.warning("%s was readable by other users: narrowed to mode 0700", settings.data_dir)
    except OSError as exc:
        raise ControlPlaneError(
            f"cannot set up the data directory {settings.data_dir}: {exc.strerror or exc}"
        ) from None


def prepare_tls(settings: ServerSettings) -> ServerTls:
    """The operator's certificate as it is, or the managed CA and server certificate."""
    external = settings.external_tls
    endpoint_names = Endpoints("", settings.endpoint_domain).names()
    if external is not None:
        check_key_pair(external.cert_file, external.key_file)
        check_covers(external.cert_file, endpoint_names)
        return ServerTls(external.cert_file, external.key_file, ca_file=None)
    try:
        names = server_names(settings.bind, socket.gethostname(), (*settings.extra_names, *endpoint_names))
    except ValueError as exc:
        raise ControlPlaneError(str(exc)) from None
    return ensure_server_tls(settings.pki_dir, names)


def open_listener(bind: str, port: int) -> socket.socket:
    try:
        try:
            ip = ipaddress.ip_address(bind)
        except ValueError:
            family, _, _, _, address = socket.getaddrinfo(bind, port, type=socket.SOCK_STREAM)[0]
            return _tcp(socket.create_server(address[:2], family=family, backlog=2048))
        family = socket.AF_INET6 if ip.version == 6 else socket.AF_INET
        dualstack = ip.version == 6 and ip.is_unspecified and socket.has_dualstack_ipv6()
        return _tcp(socket.create_server((bind, port), family=family, backlog=2048, dualstack_ipv6=dualstack))
    except OSError as exc:
        reason = os.strerror(exc.errno) if exc.errno else str(exc)
        raise ControlPlaneError(f"cannot listen on {bind}:{port}: {reason}") from None


def _tcp(listener: socket.socket) -> socket.socket:
    """``listener`` with its protocol set to TCP (``create_server`` leaves it 0).

    asyncio sets TCP_NODELAY only on accepted sockets whose ``proto`` is IPPROTO_TCP, and they
    inherit it from the listener; without it every TLS response waits ~40 ms for a delayed ACK.
    Re-wrapping the descriptor lets the kernel report the real protocol.
    """
    return socket.socket(fileno=listener.detach())


def open_database(settings: ServerSettings) -> Database:
    """The database, migrated to the newest schema (SQLite file in DATA_DIR by default)."""
    url = validate_database_url(settings.effective_database_url())
    shown = make_url(url).render_as_string(hide_password=True)
    try:
        db = Database.open(url)
        upgrade(db.engine)
    except (OSError, SQLAlchemyError) as exc:
        reason = getattr(exc, "orig", None) or exc
        raise ControlPlaneError(f"cannot open the database {shown}: {reason}") from None
    return db


def build_context(settings: ServerSettings) -> AppContext:
    """Everything the application needs: database, token signing key, public URL."""
    db = open_database(settings)
    key = load_or_create_signing_key(settings.keys_dir)
    tokens = TokenIssuer(key, settings.effective_public_url(socket.getfqdn()))
    return AppContext(
        settings=settings, db=db, tokens=tokens, package_key=load_or_create_package_key(settings.keys_dir)
    )


def uvicorn_config(ctx: AppContext, tls: ServerTls, policy: ConnectionPolicy) -> uvicorn.Config:
    """A loaded uvicorn configuration for HTTPS only, TLS 1.2 at least, with connections held
    to ``policy`` (``connections.py``)."""
    settings = ctx.settings
    config = uvicorn.Config(
        create_app(ctx),
        http=guarded_protocol(policy),
        host=settings.bind,
        port=settings.port,
        ssl_certfile=str(tls.cert_file),
        ssl_keyfile=str(tls.key_file),
        ssl_ciphers=TLS12_CIPHERS,
        log_level="warning",
        access_log=False,
        proxy_headers=False,
        server_header=False,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
    )
    try:
        config.load()
    except (OSError, ssl.SSLError) as exc:
        raise ControlPlaneError(f"cannot load the TLS certificate {tls.cert_file}: {exc}") from None
    assert config.ssl is not None
    config.ssl.minimum_version = ssl.TLSVersion.TLSv1_2
    return config


class _Server(uvicorn.Server):
    """uvicorn's server, which ends the agents' long-polls as soon as shutdown begins.

    Otherwise every waiting agent would hold the shutdown for the whole graceful timeout and
    then be cancelled, with a traceback each.
    """

    def __init__(
        self,
        config: uvicorn.Config,
        notifier: Notifier,
        handshake_timeout: float,
        gateway: tuple[GatewayService, socket.socket] | None = None,
    ) -> None:
        super().__init__(config)
        self._notifier = notifier
        self._handshake_timeout = handshake_timeout
        self._gateway = gateway

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        """uvicorn's start-up for the sockets we bound, with a TLS handshake deadline (uvicorn
        leaves asyncio's 60 s, during which a silent client holds a descriptor)."""
        if sockets is None:
            await super().startup(sockets)
            return
        await self.lifespan.startup()
        if self.lifespan.should_exit:
            raise ControlPlaneError("the application did not start; see the messages above")
        config = self.config

        def create_protocol(_loop: asyncio.AbstractEventLoop | None = None) -> asyncio.Protocol:
            return config.http_protocol_class(  # type: ignore[call-arg]
                config=config, server_state=self.server_state, app_state=self.lifespan.state, _loop=_loop
            )

        loop = asyncio.get_running_loop()
        self.servers = [
            await loop.create_server(
                create_protocol,
                sock=sock,
                ssl=config.ssl,
                backlog=config.backlog,
                ssl_handshake_timeout=self._handshake_timeout,
            )
            for sock in sockets
        ]
        if self._gateway is not None:
            service, sock = self._gateway
            assert config.ssl is not None
            await service.start(sock, config.ssl, self._handshake_timeout)
        self.started = True

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        self._notifier.close()
        if self._gateway is not None:
            await self._gateway[0].close()
        await super().shutdown(sockets)


def gateway_endpoints(settings: ServerSettings, public_url: str) -> set[tuple[str, int]]:
    """The (host, port) pairs under which clients reach the API: what the gateway admits."""
    public = urllib.parse.urlsplit(public_url)
    found = {((public.hostname or "").lower(), public.port or 443)}
    names = Endpoints("", settings.endpoint_domain).names()
    for name in (settings.bind, *settings.extra_names, *names, socket.gethostname(), socket.getfqdn()):
        found.add((name.lower(), settings.port))
    return found


def serve(settings: ServerSettings) -> None:
    """Serve until SIGINT or SIGTERM."""
    prepare_data_dir(settings)
    tls = prepare_tls(settings)
    ctx = build_context(settings)
    policy = raise_file_limit(settings.connections)
    listener = open_listener(settings.bind, settings.port)
    gateway_listener = (
        None if settings.gateway_port is None else open_listener(settings.bind, settings.gateway_port)
    )
    with listener, gateway_listener or contextlib.nullcontext():
        config = uvicorn_config(ctx, tls, policy)
        host = f"[{settings.bind}]" if ":" in settings.bind else settings.bind
        trust = f"CA certificate: {tls.ca_file}" if tls.ca_file else f"certificate: {tls.cert_file}"
        LOG.info(
            "arc-controlplane %s listening on https://%s:%d (%s)", __version__, host, settings.port, trust
        )
        gateway = None
        if gateway_listener is not None:
            service = GatewayService(
                ctx,
                gateway_endpoints(settings, ctx.tokens.public_url),
                upstream_of(settings.bind, settings.port),
                policy.max_total // 2,
            )
            gateway = (service, gateway_listener)
            LOG.info("Arc gateway service listening on %s", ctx.gateway_url)
        server = _Server(config, ctx.notifier, policy.handshake_timeout, gateway)
        server.run(sockets=[listener])
        if not server.started:
            raise ControlPlaneError("the server did not start; see the messages above")
