"""The connection state: which Azure resource this machine is, kept in ``agentconfig.json``.

Written by ``azcmagent connect`` (atomically, last of all its steps, so a machine is connected
exactly when this file says so) and removed by ``disconnect``; read by ``show``, by himds
(heartbeats, instance metadata, managed identity) and by the collection through ``show -j``.
The schema is ours (docs/reference/not-public.md: not public). A file that cannot be read as this schema is
an error that names the way out, ``azcmagent disconnect --force-local-only``.
"""

from __future__ import annotations

import json
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from arc_agent.errors import AzcmError, ErrorCode
from arc_agent.fsutil import remove_if_present, write_json_atomic

SCHEMA_VERSION = 1
WAY_OUT = "run 'azcmagent disconnect --force-local-only' to reset the local state, then 'azcmagent connect'"


@dataclass(frozen=True)
class ConnectionState:
    """A connected machine, as the control plane registered it."""

    resource_id: str
    resource_name: str
    resource_group: str
    subscription_id: str
    tenant_id: str
    location: str
    cloud: str
    vm_id: str
    vm_uuid: str
    host_id: str
    """What the control plane knows this host by (``/etc/machine-id``): clones differ."""
    principal_id: str
    """The system-assigned managed identity's object id."""
    control_plane_url: str
    assertion_audience: str
    credential_not_after: str
    """ISO 8601 UTC; the credential (``certs/identity.crt``) is renewed well before."""
    connected_at: str
    correlation_id: str = ""
    tags: dict[str, str] = field(default_factory=dict)
    private_link_scope: str = ""
    endpoints: dict[str, str] = field(default_factory=dict)
    """The services the control plane serves under other names than ``control_plane_url``
    (service → ``https://host:port``; docs/endpoints.md); empty: all at ``control_plane_url``."""

    def to_json(self) -> dict[str, Any]:
        document = {_camel(name): value for name, value in asdict(self).items()}
        document["schemaVersion"] = SCHEMA_VERSION
        return document

    @classmethod
    def from_json(cls, document: Any, source: Path) -> ConnectionState:
        if not isinstance(document, dict) or document.get("schemaVersion") != SCHEMA_VERSION:
            raise corrupted(source, f"it is not schema version {SCHEMA_VERSION} of the agent's state")
        values: dict[str, Any] = {}
        for spec in fields(cls):
            key = _camel(spec.name)
            if key not in document:
                if spec.default is not MISSING or spec.default_factory is not MISSING:  # optional
                    continue
                raise corrupted(source, f"'{key}' is missing")
            value = document[key]
            if spec.name in ("tags", "endpoints"):
                if not isinstance(value, dict) or not all(
                    isinstance(k, str) and isinstance(v, str) for k, v in value.items()
                ):
                    raise corrupted(source, f"'{key}' must map names to strings")
            elif not isinstance(value, str):
                raise corrupted(source, f"'{key}' must be a string")
            values[spec.name] = value
        return cls(**values)


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def corrupted(path: Path, problem: str) -> AzcmError:
    return AzcmError(
        ErrorCode.INITIALIZATION_FAILED,
        f"the agent's state file {path} is unusable ({problem}); {WAY_OUT}",
    )


def load_state(path: Path) -> ConnectionState | None:
    """The connection state, or None when the machine is not connected."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise AzcmError(
            ErrorCode.INITIALIZATION_FAILED, f"cannot read the agent's state file {path}: {exc.strerror}"
        ) from None
    try:
        document = json.loads(raw)
    except ValueError:
        raise corrupted(path, "it is not JSON") from None
    return ConnectionState.from_json(document, path)


def save_state(path: Path, state: ConnectionState) -> None:
    """Write the state atomically (readable by all: it holds no secret, himds reads it)."""
    write_json_atomic(path, state.to_json(), mode=0o644)


def clear_state(path: Path) -> bool:
    """Forget the connection; whether there was one."""
    return remove_if_present(path)
