"""The machine key's file, read as both the command line and himds do, and the error that says
it is unusable (with the way out)."""

from __future__ import annotations

from pathlib import Path

from arc_agent.errors import AzcmError, ErrorCode
from arc_agent.fsutil import read_no_follow

_WAY_OUT = "run 'azcmagent disconnect --force-local-only', then 'azcmagent connect'"


def read_machine_key(path: Path) -> bytes:
    """The key file's content; in a directory himds controls, so never through a link."""
    try:
        return read_no_follow(path, 64 * 1024)
    except OSError as exc:
        message = f"cannot read the machine key {path}: {exc.strerror}; {_WAY_OUT}"
        raise AzcmError(ErrorCode.PRIVATE_KEY_UNAVAILABLE, message) from None


def damaged_key(path: Path) -> AzcmError:
    return AzcmError(ErrorCode.PRIVATE_KEY_UNAVAILABLE, f"the machine key {path} is damaged; {_WAY_OUT}")
