"""Gateway mode on and off (docs/gateway.md): ``gateway.json``, ``connection.type`` and the Arc
proxy (``arcproxyd.service``), for ``azcmagent connect --gateway-id`` and ``azcmagent config set
connection.type gateway|direct``.

Switching on writes the gateway file and the setting, makes sure the Arc proxy listens on
``localhost:40343`` and proves the way with one request of the machine through it; when any of
that fails, the file and the setting are put back as they were and the error names the step.
The caller holds the state lock.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from arc_agent.arcproxy.core import (
    LISTEN_PORT,
    GatewayFileError,
    GatewaySettings,
    gateway_settings,
)
from arc_agent.config.settings import LocalConfig
from arc_agent.cpclient.machine import open_machine_api
from arc_agent.errors import AzcmError, ErrorCode
from arc_agent.fsutil import remove_if_present, write_atomic, write_json_atomic
from arc_agent.paths import AgentPaths
from arc_agent.systemd import systemd_running, unit_states, which

ARCPROXY_UNIT = "arcproxyd.service"
CONNECTION_TYPE = "connection.type"
START_WAIT_SECONDS = 15.0


def arcproxy_listening(port: int = LISTEN_PORT) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def _systemctl(*argv: str) -> None:
    systemctl = which("systemctl") or "/usr/bin/systemctl"
    subprocess.run(  # noqa: S603 - a fixed argv
        [systemctl, *argv], capture_output=True, check=False, timeout=60
    )


def _managed(paths: AgentPaths) -> bool:
    """Whether arcproxy is this host's systemd unit (not for an agent relocated by tests)."""
    return os.geteuid() == 0 and systemd_running() and paths == AgentPaths.under(Path("/"))


def ensure_arcproxy(paths: AgentPaths, wait: float = START_WAIT_SECONDS) -> None:
    """The Arc proxy listens (started and enabled at boot when systemd manages it); AZCM0004
    otherwise."""
    if _managed(paths):
        state = unit_states([ARCPROXY_UNIT])[ARCPROXY_UNIT]
        if not state.installed:
            raise AzcmError(
                ErrorCode.ARC_PROXY_NOT_RUNNING,
                f"{ARCPROXY_UNIT} is not installed: install the agent with the arc_agent role (it sets up"
                " arcproxy), then try again",
            )
        _systemctl("enable", "--now", ARCPROXY_UNIT)
    else:
        wait = 0  # nothing here starts it: it listens now or not at all
    deadline = time.monotonic() + wait
    while not arcproxy_listening():
        if time.monotonic() >= deadline:
            raise AzcmError(
                ErrorCode.ARC_PROXY_NOT_RUNNING,
                f"the Arc proxy does not listen on localhost:{LISTEN_PORT} (systemctl status arcproxyd;"
                " /var/opt/azcmagent/log/arcproxy.log)",
            )
        time.sleep(0.2)


def stop_arcproxy(paths: AgentPaths) -> None:
    if _managed(paths) and unit_states([ARCPROXY_UNIT])[ARCPROXY_UNIT].installed:
        _systemctl("disable", "--now", ARCPROXY_UNIT)


def linked_gateway(paths: AgentPaths) -> GatewaySettings:
    """The gateway the control plane links this machine to (its view of its own resource);
    AZCM0023 when there is none."""
    opened = open_machine_api(paths)
    if opened is None:
        raise AzcmError(
            ErrorCode.INVALID_ARGUMENT,
            "connection.type gateway needs a connected machine linked to an Arc gateway: connect with"
            " 'azcmagent connect --gateway-id ID'",
        )
    client, api = opened
    try:
        document = api.read().get("gateway")
    finally:
        client.close()
    if isinstance(document, dict) and paths.control_plane_ca.exists():
        document = {
            **document,
            "caCertificate": paths.control_plane_ca.read_text(encoding="ascii", errors="replace"),
        }
    if not document:
        raise AzcmError(
            ErrorCode.INVALID_ARGUMENT,
            "connection.type gateway needs an Arc gateway, and this machine is linked to none: link it (its"
            " settings/default, gatewayResourceId) or reconnect with --gateway-id, then try again",
        )
    try:
        return gateway_settings(document)
    except GatewayFileError as exc:
        raise AzcmError(ErrorCode.INVALID_ARGUMENT, f"cannot use the machine's Arc gateway: {exc}") from None


def enter(
    paths: AgentPaths, gateway: GatewaySettings, prove: Callable[[], None] | None = None
) -> Callable[[], None]:
    """Gateway mode with ``gateway``: the file, ``connection.type gateway``, the Arc proxy
    running, then ``prove`` (a request through it; default: the machine reads its resource).
    Returns the function that undoes it all (for a caller whose later step fails); undoes it
    itself and re-raises when a step here fails."""
    config = LocalConfig.load(paths.local_config)
    previous_type = config.get(CONNECTION_TYPE)
    try:
        previous_file: bytes | None = paths.gateway_file.read_bytes()
    except OSError:
        previous_file = None
    proxy_was_running = arcproxy_listening()

    def undo() -> None:
        if previous_file is None:
            remove_if_present(paths.gateway_file)
        else:
            write_atomic(paths.gateway_file, previous_file, mode=0o644)
        restored = LocalConfig.load(paths.local_config)
        restored.set(CONNECTION_TYPE, str(previous_type or "direct"), "replace")
        restored.save(paths.local_config)
        if not proxy_was_running:
            stop_arcproxy(paths)

    try:
        write_json_atomic(paths.gateway_file, gateway.document(), mode=0o644)
        config.set(CONNECTION_TYPE, "gateway", "replace")
        config.save(paths.local_config)
        ensure_arcproxy(paths)
        (prove or (lambda: _prove(paths)))()
    except BaseException:
        undo()
        raise
    return undo


def _prove(paths: AgentPaths) -> None:
    opened = open_machine_api(paths)
    if opened is None:
        return
    client, api = opened
    try:
        api.read()
    finally:
        client.close()


def leave(paths: AgentPaths) -> None:
    """Direct mode: ``connection.type direct``, the Arc proxy stopped, the gateway file gone."""
    config = LocalConfig.load(paths.local_config)
    config.set(CONNECTION_TYPE, "direct", "replace")
    config.save(paths.local_config)
    stop_arcproxy(paths)
    remove_if_present(paths.gateway_file)
