"""Files written atomically, with their mode (and owner) right from the start.

A state file is never seen half-written: the data goes to a temporary file in the same
directory, created with the final mode (so a secret is never readable by others, not even for
an instant), is flushed to disk, then renamed over the old file, and the directory is synced.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any


def write_atomic(
    path: Path, data: bytes, *, mode: int = 0o644, group: int | None = None, owner: int | None = None
) -> None:
    """Replace ``path`` with ``data``; ``owner`` (a uid) and ``group`` (a gid) own it when given
    (root only)."""
    directory = path.parent
    temporary = directory / f".{path.name}.tmp-{os.getpid()}"
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    try:
        try:
            os.fchmod(fd, mode)  # the umask may have taken bits off
            if owner is not None or group is not None:
                os.fchown(fd, 0 if owner is None else owner, -1 if group is None else group)
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
    sync_directory(directory)


def write_json_atomic(path: Path, document: Any, *, mode: int = 0o644, group: int | None = None) -> None:
    data = (json.dumps(document, indent=2, sort_keys=True) + "\n").encode()
    write_atomic(path, data, mode=mode, group=group)


def sync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def remove_if_present(path: Path) -> bool:
    """Remove ``path``; whether it was there."""
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    return True
