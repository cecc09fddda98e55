"""An ``argparse`` parser that reports mistakes as AZCM0023 instead of exiting with 2."""

from __future__ import annotations

import argparse
from typing import NoReturn

from arc_agent.errors import AzcmError, ErrorCode


class AzcmArgumentParser(argparse.ArgumentParser):
    """Raise :class:`AzcmError` (invalid argument value) on any usage error.

    The caller renders the error once, as text or JSON, and exits with its code; argparse's own
    "print usage, exit 2" would break the agent's exit-code contract (docs/reference/azcmagent.md).
    Sub-parsers created from it inherit the behaviour.
    """

    def error(self, message: str) -> NoReturn:
        raise AzcmError(ErrorCode.INVALID_ARGUMENT, message)
