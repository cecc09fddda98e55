"""Rendering of command results and AZCM errors, as text or as JSON (``-j/--json``)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TextIO

from arc_agent.errors import AzcmError


@dataclass(frozen=True)
class CommandResult:
    """What a command produced: ``text`` for people, ``data`` for ``--json``."""

    text: str
    data: Mapping[str, object] = field(default_factory=dict)
    exit_code: int = 0
    """Non-zero for a result that is also a failure (``check`` with an unreachable endpoint)."""


def write_result(result: CommandResult, *, as_json: bool, stdout: TextIO) -> None:
    if as_json:
        stdout.write(json.dumps(result.data) + "\n")
    else:
        stdout.write(result.text if result.text.endswith("\n") else result.text + "\n")


def write_error(error: AzcmError, *, as_json: bool, stdout: TextIO, stderr: TextIO) -> None:
    """Text goes to stderr as one line; JSON goes to stdout, where ``--json`` callers read."""
    if as_json:
        body = {"error": {"code": error.error_id, "message": error.message}}
        stdout.write(json.dumps(body) + "\n")
    else:
        message = " ".join(str(error).split("\n"))
        stderr.write(message + "\n")
