"""The exception types every layer may raise: ``ControlPlaneError`` for mistakes an operator can
fix (bad files, ports, directories), ``ArmError`` for a request refused (the HTTP layer renders
it as ARM's error body, ``http/errors.py``)."""

from __future__ import annotations

from typing import Any


class ControlPlaneError(Exception):
    """A runtime error reported as one line, ``arc-controlplane: error: <message>``, exit 1."""


class UsageError(ControlPlaneError):
    """A command-line usage error (exit 2, like argparse)."""


class ArmError(Exception):
    """A refused request: HTTP status, ARM error code, message for the caller. The domain raises it
    too (a conflict is a conflict in any API); ``http/errors.py`` renders it."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message}}
