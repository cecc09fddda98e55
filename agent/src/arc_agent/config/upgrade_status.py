"""``upgrade-status.json``: the last agent upgrade attempt (docs/agent-upgrade.md), as the upgrade
(``upgrade/transaction.py``) and the recovery script write it, for every reader: the upgrade
command, himds (reports it in ARM's ``agentUpgrade.lastAttempt*``) and extd (does not start an
answered request again)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

MAX_BYTES = 65536


def read_last_attempt(path: Path) -> dict[str, Any]:
    """The recorded attempt; {} when there is none or it is unreadable."""
    try:
        document = json.loads(path.read_bytes()[:MAX_BYTES])
    except (OSError, ValueError):
        return {}
    return document if isinstance(document, dict) else {}
