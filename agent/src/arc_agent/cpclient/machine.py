"""The agent API as this machine: its connection state, the control plane's CA and the machine's
own key, put together (for the services and for the CLI's commands that talk as the machine)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from arc_agent.config.connection import load_state
from arc_agent.cpclient.agentapi import MachineApi
from arc_agent.cpclient.outbound import proxy_policy
from arc_agent.cpclient.transport import HttpsClient
from arc_agent.fsutil import write_json_atomic
from arc_agent.identity.jws import AssertionSigner
from arc_agent.identity.signer import load_machine_signer
from arc_agent.paths import AgentPaths


def open_machine_api(paths: AgentPaths, timeout: float = 30) -> tuple[HttpsClient, MachineApi] | None:
    """A client (the caller closes it) and the machine's API; None when the machine is not
    connected."""
    state = load_state(paths.agent_config)
    if state is None:
        return None
    ca = paths.control_plane_ca if paths.control_plane_ca.exists() else None
    client = HttpsClient(
        state.control_plane_url, ca, timeout=timeout, proxies=proxy_policy(paths), named=state.endpoints
    )
    signer = AssertionSigner(load_machine_signer(paths.identity_key), state.vm_id, state.assertion_audience)
    return client, MachineApi(client, signer)


def package_signing_keys(api: MachineApi, kept: Path) -> dict[str, Any]:
    """The control plane's package-signing key (a JWKS), fetched once over its pinned TLS and
    kept in ``kept`` (0600, in a 0700 folder) for the packages that follow."""
    try:
        keys: dict[str, Any] = json.loads(kept.read_text(encoding="utf-8"))
        if keys.get("keys"):
            return keys
    except (OSError, ValueError):
        pass
    keys = api.package_signing_keys()
    kept.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    write_json_atomic(kept, keys, mode=0o600)
    return keys
