"""What the extension service records of each extension on this machine: one JSON file per
extension, written atomically (root's, 0600), so that after a crash or a restart it knows what is
installed, which sequence number it handled, how that ended and whether the control plane has
heard (docs/extensions.md)."""

from __future__ import annotations

import contextlib
import json
import os
import re
from collections.abc import Iterator
from dataclasses import asdict, replace
from pathlib import Path

from arc_agent.extd.plan import Installed
from arc_agent.fsutil import flock_within, remove_if_present, write_json_atomic

_SAFE = re.compile(r"[^a-z0-9._-]")


class Records:
    """The records in ``folder`` (created 0700), by extension name (compared in lower case)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def _path(self, name: str) -> Path:
        return self.folder / (_SAFE.sub("_", name.lower()) + ".json")

    def load(self) -> dict[str, Installed]:
        found: dict[str, Installed] = {}
        if not self.folder.is_dir():
            return found
        for path in sorted(self.folder.glob("*.json")):
            try:
                record = Installed(**json.loads(path.read_text(encoding="utf-8")))
            except (OSError, ValueError, TypeError):
                continue  # unreadable: as if not recorded; the plan installs it again
            found[record.name.lower()] = record
        return found

    def save(self, record: Installed) -> Installed:
        self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(self.folder, 0o700)
        write_json_atomic(self._path(record.name), asdict(record), mode=0o600)
        return record

    def update(self, record: Installed, **changes: object) -> Installed:
        return self.save(replace(record, **changes))  # type: ignore[arg-type]

    def forget(self, name: str) -> None:
        remove_if_present(self._path(name))


LOCK_FILE = "extd.lock"


class Busy(RuntimeError):
    """Another process holds the extension state (the extension service runs)."""


@contextlib.contextmanager
def exclusive(state_dir: Path) -> Iterator[None]:
    """Hold the extension state for the block (``flock`` on ``<state_dir>/extd.lock``): extd holds
    it while it runs, ``azcmagent extension remove`` while it removes; raises Busy at once when the
    other holds it."""
    state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(state_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
    try:
        if not flock_within(fd, 0):
            raise Busy(str(state_dir / LOCK_FILE))
        yield
    finally:
        os.close(fd)
