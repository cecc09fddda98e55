"""``DATA_DIR/init.json``: what ``arc-controlplane init`` made, so later commands have defaults.

It names the default tenant, subscription, resource group and the onboarding service
principal's client id, and the URL clients use. It never holds a secret; it is written
atomically with mode 0600 like everything else in the data directory.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from arc_controlplane.errors import ControlPlaneError
from arc_controlplane.fsutil import write_atomic

STATE_FILE = "init.json"
STATE_VERSION = 1


@dataclass(frozen=True)
class InitState:
    tenant_id: str
    subscription_id: str
    resource_group: str
    location: str
    client_id: str
    """The onboarding service principal made by ``init``."""
    url: str

    def to_json(self) -> dict[str, object]:
        return {
            "version": STATE_VERSION,
            "tenantId": self.tenant_id,
            "subscriptionId": self.subscription_id,
            "resourceGroup": self.resource_group,
            "location": self.location,
            "clientId": self.client_id,
            "url": self.url,
        }


def state_path(data_dir: Path) -> Path:
    return data_dir / STATE_FILE


def read_state(data_dir: Path) -> InitState | None:
    """The recorded state, or None when ``init`` has not run in ``data_dir``."""
    path = state_path(data_dir)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise ControlPlaneError(f"cannot read {path}: {exc}") from None
    if not isinstance(raw, dict) or raw.get("version") != STATE_VERSION:
        raise ControlPlaneError(
            f"{path} is not a version {STATE_VERSION} state file of arc-controlplane init"
        )
    try:
        return InitState(
            tenant_id=str(raw["tenantId"]),
            subscription_id=str(raw["subscriptionId"]),
            resource_group=str(raw["resourceGroup"]),
            location=str(raw["location"]),
            client_id=str(raw["clientId"]),
            url=str(raw["url"]),
        )
    except KeyError as exc:
        raise ControlPlaneError(f"{path} lacks the key {exc}; restore it from a backup") from None


def write_state(data_dir: Path, state: InitState) -> None:
    """Replace ``init.json`` atomically (mode 0600)."""
    data = json.dumps(state.to_json(), indent=2) + "\n"
    write_atomic(state_path(data_dir), data.encode("utf-8"), 0o600)
