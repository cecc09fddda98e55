"""Server settings: built once from the command line, then passed down (never read globally)."""

from __future__ import annotations

import datetime as dt
import os
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from arc_controlplane.timing import DEFAULT_HEARTBEAT_INTERVAL_SECONDS, Timing

DATA_DIR_ENV_VAR = "ARC_CONTROLPLANE_DATA_DIR"
SYSTEM_DATA_DIR = Path("/var/lib/arc-controlplane")
DEFAULT_BIND = "127.0.0.1"
DEFAULT_PORT = 8443
DEFAULT_AUDIT_RETENTION_DAYS = 90
DEFAULT_EXTENSION_OPERATION_TIMEOUT_SECONDS = 6 * 3600
DEFAULT_MAX_CONNECTIONS_PER_ADDRESS = 2048


def default_data_dir(environ: Mapping[str, str], euid: int, home: Path) -> Path:
    """``$ARC_CONTROLPLANE_DATA_DIR``, else the system directory for root, else one under ``home``."""
    configured = environ.get(DATA_DIR_ENV_VAR, "")
    if configured:
        return Path(configured)
    if euid == 0:
        return SYSTEM_DATA_DIR
    return home / ".local" / "share" / "arc-controlplane"


def pki_dir_of(data_dir: Path) -> Path:
    return data_dir / "pki"


@dataclass(frozen=True)
class ConnectionPolicy:
    """How long a client may take to send a request, and how many connections it may hold
    (``server/connections.py`` enforces it)."""

    handshake_timeout: float = 10.0
    header_timeout: float = 10.0
    body_timeout: float = 30.0
    max_per_address: int = DEFAULT_MAX_CONNECTIONS_PER_ADDRESS
    """An Arc gateway or a proxy puts up to ~2,000 agents behind one address."""
    max_total: int = 60_000


@dataclass(frozen=True)
class ExternalTls:
    """A certificate and key given by the operator, used as they are."""

    cert_file: Path
    key_file: Path


@dataclass(frozen=True)
class ServerSettings:
    data_dir: Path
    bind: str = DEFAULT_BIND
    port: int = DEFAULT_PORT
    external_tls: ExternalTls | None = None
    extra_names: tuple[str, ...] = ()
    """``--san`` values: more names for the generated server certificate."""
    database_url: str | None = None
    """``--database-url``; None means the SQLite file DATA_DIR/controlplane.db."""
    public_url: str | None = None
    """``--public-url``: how clients reach this server (token issuer, discovery); None means
    ``https://<bind>:<port>`` (the host name when bound to all addresses)."""
    heartbeat_interval: int = DEFAULT_HEARTBEAT_INTERVAL_SECONDS
    """``--heartbeat-interval`` in seconds; machines read Disconnected after three intervals."""
    connections: ConnectionPolicy = ConnectionPolicy()
    """Time limits and caps of client connections (``--max-connections-per-address``)."""
    audit_retention_days: int = DEFAULT_AUDIT_RETENTION_DAYS
    """``--audit-retention-days``: audit entries older than this are deleted."""
    extension_operation_timeout: int = DEFAULT_EXTENSION_OPERATION_TIMEOUT_SECONDS
    """``--extension-operation-timeout`` in seconds: an extension request the machine has not
    acted on within it fails (Azure keeps them 6 hours)."""
    gateway_port: int | None = None
    """``--gateway-port``: where the Arc gateway service listens (same address and certificate);
    None: no gateway service, and no gateway can be created (docs/gateway.md)."""
    endpoint_domain: str = ""
    """``--endpoint-domain``: each service also under its own name in this domain
    (``login.DOMAIN``, ``gbl.his.DOMAIN``, ...; docs/endpoints.md); "" for none."""

    def __post_init__(self) -> None:
        Timing.every(self.heartbeat_interval)  # ValueError now rather than when the server starts

    @property
    def extension_timeout(self) -> dt.timedelta:
        return dt.timedelta(seconds=self.extension_operation_timeout)

    @property
    def audit_retention(self) -> dt.timedelta:
        return dt.timedelta(days=self.audit_retention_days)

    @property
    def timing(self) -> Timing:
        return Timing.every(self.heartbeat_interval)

    @property
    def pki_dir(self) -> Path:
        return pki_dir_of(self.data_dir)

    @property
    def keys_dir(self) -> Path:
        return self.data_dir / "keys"

    @property
    def packages_dir(self) -> Path:
        """Published extension packages, by SHA-256 (docs/extensions.md)."""
        return self.data_dir / "packages"

    def effective_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'controlplane.db'}"

    def effective_public_url(self, hostname: str) -> str:
        if self.public_url:
            return self.public_url.rstrip("/")
        host = hostname if self.bind in ("0.0.0.0", "::") else self.bind  # noqa: S104 - naming it, not binding
        if ":" in host:
            host = f"[{host}]"
        return f"https://{host}:{self.port}"


def gateway_url(public_url: str, gateway_port: int | None) -> str | None:
    """The gateways' ``gatewayEndpoint``: the public URL's host on the gateway port."""
    if gateway_port is None:
        return None
    host = urllib.parse.urlsplit(public_url).hostname or ""
    return f"https://[{host}]:{gateway_port}" if ":" in host else f"https://{host}:{gateway_port}"


def current_default_data_dir() -> Path:
    """The default for this process (reads the environment and the effective user id)."""
    return default_data_dir(os.environ, os.geteuid(), Path.home())
