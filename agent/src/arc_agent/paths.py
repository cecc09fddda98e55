"""Where the agent keeps its files on Linux (docs/reference/azcmagent.md, D:agent-overview.md)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import NamedTuple

from arc_agent.errors import AzcmError, ErrorCode

ROOT_ENV_VAR = "AZCMAGENT_ROOT"


class AgentPaths(NamedTuple):
    """Every file and directory of the agent; build it once and pass it down.

    Who owns what (docs/agent-cli.md, "Files"): root owns the state directory and every file
    root trusts in it (the connection state, the local settings, the control plane's CA);
    the ``himds`` account owns only the directories of what it writes itself (``certs/`` for
    the renewed credential, ``tokens/``, ``socks/``, ``status/``), and shares ``log/`` (sticky:
    each account's files stay its own). Root never follows a link in those (``fsutil``).
    """

    install_dir: Path
    bin_dir: Path
    state_dir: Path
    """root:himds 0755."""
    certs_dir: Path
    """himds:himds 0750: the machine key and credential (root writes them at connect)."""
    tokens_dir: Path
    socks_dir: Path
    himds_socket: Path
    status_dir: Path
    """himds:himds 0755: what himds reports (``himds_status``)."""
    wake_dir: Path
    """himds:himds 0750: one file per service started on demand (``ondemand.py``): himds writes
    ``extd`` or ``gcad`` when there is work for it, systemd's path unit starts the service."""
    log_dir: Path
    """root:himds 1775: ``himds.log`` is himds's, ``azcmagent.log`` root's."""
    lock_file: Path
    """root:himds 0640: writers of the agent's state hold an ``flock`` on it (``statedir.py``)."""
    agent_config: Path
    """The connection state (``state.py``): which resource this machine is; root-owned, 0644."""
    local_config: Path
    """The ``azcmagent config`` settings (``localconfig.py``); root-owned, 0644."""
    identity_key: Path
    """The machine's private key (PEM): mode 0600, himds:himds; never leaves the machine."""
    identity_cert: Path
    """The credential: the control plane's certificate over that key (PEM)."""
    credential_record: Path
    """When the credential himds renewed last expires (written by himds; for ``show``)."""
    control_plane_ca: Path
    """The control plane's CA certificate as given at connect time (copied here, root-owned)."""
    legacy_control_plane_ca: Path
    """Where earlier releases of this agent kept that copy, in a directory himds controls: never
    trusted, removed by root (``statedir.secure``)."""
    himds_status: Path
    gateway_file: Path
    """The machine's Arc gateway (``gateway.json``: endpoint, gatewayId, bypass), written by
    ``azcmagent`` (root, 0644) for arcproxy and ``show`` (docs/gateway.md)."""
    upgrade_status: Path
    """The last upgrade attempt (``azcmagent upgrade``, docs/agent-upgrade.md); root's, 0644."""
    """What himds last learnt (heartbeat, status, errors), written by himds, read by ``show``."""
    systemd_env_file: Path
    waagent_dir: Path
    """Extension handlers (``<Publisher.Type>-<version>``) and the extension certificate
    (``<thumbprint>.crt``, ``.prv``), as the VM extension handler model has them; root's, 0700."""
    extension_logs_dir: Path
    """The handlers' log folders (``/var/log/azure/<Publisher.Type>``)."""
    extension_state_dir: Path
    """The extension service's records and the package-signing key it trusts; root's, 0700."""
    extension_manager_log: Path
    """The extension service's log (``ext_mgr_logs/gc_ext.log``, as the real agent's)."""
    guest_config_state_dir: Path
    """gcad's cached assignments, its records of each and the reports it has yet to send; root's, 0700."""
    guest_config_packages_dir: Path
    """The configuration packages gcad downloaded (``<Name>/<sha256>.zip``); root's, 0700."""
    guest_config_log: Path
    """gcad's log (``arc_policy_logs/gc_agent.log``, as the real agent's)."""

    @classmethod
    def under(cls, root: Path) -> AgentPaths:
        """The agent's paths below ``root`` (``/`` on a real host)."""
        install_dir = root / "opt" / "azcmagent"
        state_dir = root / "var" / "opt" / "azcmagent"
        socks_dir = state_dir / "socks"
        certs_dir = state_dir / "certs"
        status_dir = state_dir / "status"
        return cls(
            install_dir=install_dir,
            bin_dir=install_dir / "bin",
            state_dir=state_dir,
            certs_dir=certs_dir,
            tokens_dir=state_dir / "tokens",
            socks_dir=socks_dir,
            himds_socket=socks_dir / "himds.sock",
            status_dir=status_dir,
            wake_dir=state_dir / "wake",
            log_dir=state_dir / "log",
            lock_file=state_dir / "agent.lock",
            agent_config=state_dir / "agentconfig.json",
            local_config=state_dir / "localconfig.json",
            identity_key=certs_dir / "identity.key",
            identity_cert=certs_dir / "identity.crt",
            credential_record=certs_dir / "credential.json",
            control_plane_ca=state_dir / "connection-ca.pem",
            legacy_control_plane_ca=certs_dir / "controlplane-ca.pem",
            himds_status=status_dir / "himds-status.json",
            upgrade_status=state_dir / "upgrade-status.json",
            gateway_file=state_dir / "gateway.json",
            systemd_env_file=root / "lib" / "systemd" / "system.conf.d" / "azcmagent.conf",
            waagent_dir=root / "var" / "lib" / "waagent",
            extension_logs_dir=root / "var" / "log" / "azure",
            extension_state_dir=root / "var" / "lib" / "GuestConfig" / "extension_state",
            extension_manager_log=root / "var" / "lib" / "GuestConfig" / "ext_mgr_logs" / "gc_ext.log",
            guest_config_state_dir=root / "var" / "lib" / "GuestConfig" / "gc_state",
            guest_config_packages_dir=root / "var" / "lib" / "GuestConfig" / "Configuration",
            guest_config_log=root / "var" / "lib" / "GuestConfig" / "arc_policy_logs" / "gc_agent.log",
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
