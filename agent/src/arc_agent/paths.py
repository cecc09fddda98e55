"""Where the agent keeps its files on Linux (reference §1.7, D:agent-overview.md)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from arc_agent.errors import AzcmError, ErrorCode

ROOT_ENV_VAR = "AZCMAGENT_ROOT"


@dataclass(frozen=True)
class AgentPaths:
    """Every file and directory of the agent; build it once and pass it down."""

    install_dir: Path
    bin_dir: Path
    state_dir: Path
    certs_dir: Path
    tokens_dir: Path
    socks_dir: Path
    himds_socket: Path
    log_dir: Path
    agent_config: Path
    """The connection state (``state.py``): which resource this machine is; root-owned, 0644."""
    local_config: Path
    """The ``azcmagent config`` settings (``localconfig.py``)."""
    identity_key: Path
    """The machine's private key (PEM): mode 0640, root:himds; never leaves the machine."""
    identity_cert: Path
    """The credential: the control plane's certificate over that key (PEM)."""
    control_plane_ca: Path
    """The control plane's CA certificate as given at connect time (copied here)."""
    himds_status: Path
    """What himds last learnt (heartbeat, status, errors), written by himds, read by ``show``."""
    systemd_env_file: Path

    @classmethod
    def under(cls, root: Path) -> AgentPaths:
        """The agent's paths below ``root`` (``/`` on a real host)."""
        install_dir = root / "opt" / "azcmagent"
        state_dir = root / "var" / "opt" / "azcmagent"
        socks_dir = state_dir / "socks"
        return cls(
            install_dir=install_dir,
            bin_dir=install_dir / "bin",
            state_dir=state_dir,
            certs_dir=state_dir / "certs",
            tokens_dir=state_dir / "tokens",
            socks_dir=socks_dir,
            himds_socket=socks_dir / "himds.sock",
            log_dir=state_dir / "log",
            agent_config=state_dir / "agentconfig.json",
            local_config=state_dir / "localconfig.json",
            identity_key=state_dir / "certs" / "identity.key",
            identity_cert=state_dir / "certs" / "identity.crt",
            control_plane_ca=state_dir / "certs" / "controlplane-ca.pem",
            himds_status=state_dir / "himds-status.json",
            systemd_env_file=root / "lib" / "systemd" / "system.conf.d" / "azcmagent.conf",
        )

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> AgentPaths:
        """The real paths, or the same tree relocated under ``$AZCMAGENT_ROOT``.

        ``AZCMAGENT_ROOT`` exists for unit tests only: it lets a test run the agent against a
        temporary directory. Real hosts never set it.
        """
        root = environ.get(ROOT_ENV_VAR, "")
        if not root:
            return cls.under(Path("/"))
        if not os.path.isabs(root):
            raise AzcmError(
                ErrorCode.INVALID_ARGUMENT, f"{ROOT_ENV_VAR} must be an absolute path, got {root!r}"
            )
        return cls.under(Path(root))
