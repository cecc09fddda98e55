"""Conditional requests, as ARM has them: ``ETag`` on a resource, ``If-Match`` and
``If-None-Match`` on the writes (RFC 9110 §13.1).

Two operators updating one machine: each reads it (with its ``ETag``), changes it, and sends the
change with ``If-Match: <that ETag>``; the second to arrive gets 412 ``PreconditionFailed`` and
reads again, instead of silently overwriting the first one's change. ``If-Match: *`` asks that the
resource exist, ``If-None-Match: *`` that it not exist (a PUT that must only create).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from arc_controlplane.errors import ArmError


def etag_of(version: Any) -> str:
    """A strong entity tag for a resource's version (anything JSON can encode)."""
    digest = hashlib.sha256(json.dumps(version, sort_keys=True, default=str).encode()).hexdigest()
    return f'"{digest[:32]}"'


def _tags(header: str) -> set[str]:
    return {tag.strip().removeprefix("W/") for tag in header.split(",") if tag.strip()}


def check_conditions(headers: Mapping[str, str], current: str | None) -> None:
    """412 ``PreconditionFailed`` unless the request's conditions hold for ``current`` (the
    resource's ETag now, or None when it does not exist)."""
    if_match = headers.get("if-match")
    if if_match is not None:
        wanted = _tags(if_match)
        if current is None or ("*" not in wanted and current not in wanted):
            raise _failed("If-Match", if_match, current)
    if_none_match = headers.get("if-none-match")
    if if_none_match is not None and current is not None:
        wanted = _tags(if_none_match)
        if "*" in wanted or current in wanted:
            raise _failed("If-None-Match", if_none_match, current)


def _failed(header: str, value: str, current: str | None) -> ArmError:
    now = f"its ETag is now {current}" if current is not None else "it does not exist"
    return ArmError(
        412,
        "PreconditionFailed",
        f"The condition specified using HTTP conditional header(s) is not met: {header} {value[:100]}, but "
        f"{now}. Read the resource again, then send the change with its current ETag.",
    )
