"""Processes as ``/proc`` tells them: a process's start time, which tells it from a later process
with the same id (extd waits for a handler command left by a restart; an upgrade names itself so
that the recovery script leaves it alone), and this boot's id."""

from __future__ import annotations

from pathlib import Path


def process_start(pid: int) -> str:
    """When process ``pid`` started (clock ticks since boot, field 22 of ``/proc/<pid>/stat``); ""
    when there is no such process (or it has ended and waits to be reaped)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
    except OSError:
        return ""
    rest = fields[fields.rfind(")") + 2 :].split()
    return "" if len(rest) < 20 or rest[0] == "Z" else rest[19]


def boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text(encoding="ascii").strip()
    except OSError:
        return ""
