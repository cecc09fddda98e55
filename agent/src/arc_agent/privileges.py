"""Who runs: the root check every changing command makes, and the ``himds`` account's ids.

Shared by the command line and the services (below both: nothing here imports them).
"""

from __future__ import annotations

import os
import pwd

from arc_agent.errors import AzcmError, ErrorCode

HIMDS_USER = "himds"


def require_root(command: str) -> None:
    """AZCM0018 unless this process runs as root (``azcmagent COMMAND`` needs it)."""
    if os.geteuid() != 0:
        raise AzcmError(ErrorCode.NOT_ELEVATED, f"'azcmagent {command}' must run as root (use sudo)")


def himds_ids() -> tuple[int, int] | None:
    """The uid and gid of the ``himds`` user, or None where it does not exist (unit tests)."""
    try:
        entry = pwd.getpwnam(HIMDS_USER)
    except KeyError:
        return None
    return entry.pw_uid, entry.pw_gid
