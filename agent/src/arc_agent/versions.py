"""Agent versions compared as numbers: ``1.64.03414.2961`` is ``1.64.3414.2961``, and ``1.64``
names every ``1.64.x`` (a prefix of its numbers)."""

from __future__ import annotations


def version_key(version: str) -> tuple[int, ...]:
    """The version's numbers; () when it is not a version."""
    try:
        return tuple(int(part) for part in version.split("."))
    except ValueError:
        return ()
