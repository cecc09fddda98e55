"""File-system helpers: private directories and atomic writes with modes set from creation."""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import stat
from pathlib import Path

PRIVATE_DIR_MODE = 0o700
PRIVATE_FILE_MODE = 0o600


def ensure_private_dir(path: Path) -> bool:
    """Make ``path`` a directory only its owner can enter (0700); parents get default modes.

    A directory that exists with more access (0755 from an earlier ``mkdir``, say) is narrowed
    to 0700 when it belongs to this user (returns True: the caller may say so); one that belongs
    to another user is refused (PermissionError naming it): the control plane would keep its
    database and keys where someone else decides who may read them.
    """
    if path.is_dir():
        return narrow_to_owner(path, PRIVATE_DIR_MODE)
    for ancestor in (path, *path.parents):
        if ancestor.exists():
            if not ancestor.is_dir():
                raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(ancestor))
            break
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        path.mkdir(mode=PRIVATE_DIR_MODE)
    except FileExistsError:
        if not path.is_dir():
            raise
        return narrow_to_owner(path, PRIVATE_DIR_MODE)
    os.chmod(path, PRIVATE_DIR_MODE)  # mkdir's mode is filtered by the umask
    return False


def narrow_to_owner(path: Path, mode: int) -> bool:
    """Take from ``path`` every permission bit beyond ``mode``; whether there were any.

    PermissionError when ``path`` belongs to another user (we would not own what we protect).
    """
    info = path.stat()
    if info.st_uid != os.geteuid():
        raise PermissionError(
            errno.EPERM,
            f"{path} belongs to user id {info.st_uid}, not to this user ({os.geteuid()}): give a "
            "directory of this user's own",
            str(path),
        )
    extra = stat.S_IMODE(info.st_mode) & ~mode
    if extra:
        os.chmod(path, stat.S_IMODE(info.st_mode) & mode)
    return bool(extra)


def write_atomic(path: Path, data: bytes, mode: int) -> None:
    """Replace ``path`` with ``data``: temp file in the same directory, fsync, ``os.replace``.

    The temp file is created with ``mode`` (then forced past the umask), so a private key is
    never readable by others, not even for an instant.
    """
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
    try:
        try:
            os.fchmod(fd, mode)
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
