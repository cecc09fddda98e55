"""AZCM error codes and the one exception type the agent raises for them.

The codes and their rendering (``AZCM0026: Network Error``) follow the public contract
(reference §1.6, D:troubleshoot-agent-onboard.md): the CLI exits with the number N of
``AZCM00NN``.
"""

from __future__ import annotations

import enum


class ErrorCode(enum.IntEnum):
    """AZCM codes used by this implementation so far (exit code == value)."""

    UNKNOWN = 1
    INTERNAL = 2
    NOT_SUPPORTED = 3
    INITIALIZATION_FAILED = 6
    USER_CANCELLED = 11
    MISSING_MANDATORY_PARAMETER = 16
    NOT_ELEVATED = 18
    BAD_CONFIG_FILE_PATH = 19
    INVALID_ARGUMENT = 23


class AzcmError(Exception):
    """An error with an AZCM code; ``str()`` gives ``AZCM00NN: <message>``."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(code, message)
        self.code = int(code)
        self.message = message

    @property
    def error_id(self) -> str:
        """The code as the agent prints it, e.g. ``AZCM0023``."""
        return f"AZCM{self.code:04d}"

    def __str__(self) -> str:
        return f"{self.error_id}: {self.message}"
