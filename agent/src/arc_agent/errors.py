"""AZCM error codes and the one exception type the agent raises for them.

The codes and their rendering (``AZCM0026: Network Error``) follow the public contract
(docs/reference/azcmagent.md, D:troubleshoot-agent-onboard.md): the CLI exits with the number N of
``AZCM00NN``.
"""

from __future__ import annotations

import enum
import sys
from collections.abc import Callable


class ErrorCode(enum.IntEnum):
    """The AZCM codes of the CLI (docs/reference/azcmagent.md; exit code == value)."""

    UNKNOWN = 1
    INTERNAL = 2  # internal error: restart himds
    NOT_SUPPORTED = 3
    ARC_PROXY_NOT_RUNNING = 4
    NO_FILE_LOGGER = 5
    INITIALIZATION_FAILED = 6
    USER_CANCELLED = 11
    INVALID_ACCESS_TOKEN = 12
    MISSING_MANDATORY_PARAMETER = 16
    NOT_ELEVATED = 18
    BAD_CONFIG_FILE_PATH = 19
    UNKNOWN_REGION = 20
    INVALID_ARGUMENT = 23
    NETWORK_ERROR = 26
    CONFIGURATION_CONFLICT = 27
    INVALID_CREDENTIALS = 41  # invalid credentials / token acquisition failed
    RESOURCE_CREATION_FAILED = 42
    RESOURCE_DELETION_FAILED = 43  # use --force-local-only
    RESOURCE_EXISTS = 44
    RECONNECT_KEY_UPDATE_FAILED = 45
    HIMDS_NOT_RESPONDING = 61
    CONNECT_FAILED = 62
    DISCONNECT_FAILED = 63
    HIMDS_METADATA_UNAVAILABLE = 64
    HIMDS_STATUS_UNAVAILABLE = 65
    HIMDS_LOCAL_CONFIG_UNAVAILABLE = 66
    ALREADY_CONNECTED = 67
    SUBSCRIPTION_LOOKUP_FAILED = 68
    LOCAL_CONFIG_UPDATE_FAILED = 69
    HIMDS_UNREACHABLE = 70
    EXTENSION_TOOL = 72  # azcmagent extension: the extension service runs, or a handler failed
    UPGRADE_FAILED = 80  # azcmagent upgrade: a package that does not match, or a failed health check (ours)
    CLOUD_CONFIGURATION_UNAVAILABLE = 75
    COMMAND_EXECUTION_ERROR = 101
    RESOURCE_NAME_FROM_HOSTNAME_FAILED = 102
    RSA_KEY_GENERATION_FAILED = 103
    PRIVATE_KEY_UNAVAILABLE = 104
    SIGNING_FAILED = 105
    SAVE_PARAMETERS_FAILED = 106
    CERTIFICATE_ERROR = 107


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


def service_main(args: list[str], body: Callable[[], int]) -> int:
    """Run a service's ``main`` body: an AzcmError is its message and code, anything else
    AZCM0001 'unexpected error' (with the traceback under ``-v``/``--verbose``), never a crash."""
    try:
        return body()
    except AzcmError as error:
        sys.stderr.write(f"{error}\n")
        return error.code
    except Exception as exc:
        if "-v" in args or "--verbose" in args:
            import traceback  # only here: a resident service need not keep it (docs/architecture.md)

            traceback.print_exc(file=sys.stderr)
        sys.stderr.write(f"{AzcmError(ErrorCode.UNKNOWN, f'unexpected error: {exc}')}\n")
        return int(ErrorCode.UNKNOWN)
