"""Files written atomically, with their mode (and owner) right from the start, and never through
a link.

A state file is never seen half-written: the data goes to a temporary file in the same
directory, created with the final mode (so a secret is never readable by others, not even for
an instant), is flushed to disk, then renamed over the old file, and the directory is synced.

Some of the agent's directories belong to the ``himds`` account (``certs/``, ``tokens/``,
``status/``, and ``log/`` in part), yet root works in them too (``connect`` writes the machine
key there, ``logs`` reads them). Whoever controls a directory can put a link or a file of their
own under any name in it; so every file operation here works relative to a descriptor of the
directory opened once with ``O_NOFOLLOW`` (:class:`Directory`), opens files with ``O_NOFOLLOW``
(a link is refused, never followed), creates them with ``O_EXCL`` under an unpredictable
temporary name, and checks what it opened is a regular file (a FIFO would block the reader).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import secrets
import stat
import time
from pathlib import Path
from types import TracebackType
from typing import Any

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
MAX_READ_BYTES = 16 * 1024 * 1024


class NotARegularFile(OSError):
    """What was found under a name is a link, a FIFO, a device or a directory."""


class Directory:
    """A directory opened once, by a descriptor: what it holds is reached relative to that
    descriptor, so swapping the directory or a link in its path changes nothing afterwards."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fd = os.open(path, _DIR_FLAGS)

    def __enter__(self) -> Directory:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def open_read(self, name: str) -> int:
        """A descriptor of the regular file ``name``; NotARegularFile for anything else (a link
        included: it is not followed); FileNotFoundError when there is nothing."""
        try:
            fd = os.open(name, _READ_FLAGS, dir_fd=self.fd)
        except OSError as exc:
            if exc.errno == errno.ELOOP:  # O_NOFOLLOW met a symbolic link
                raise NotARegularFile(
                    exc.errno, "a symbolic link (links are not followed)", str(self.path / name)
                ) from None
            raise
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            os.close(fd)
            raise NotARegularFile(0, "not a regular file", str(self.path / name))
        os.set_blocking(fd, True)
        return fd

    def read_bytes(self, name: str, limit: int = MAX_READ_BYTES) -> bytes:
        fd = self.open_read(name)
        try:
            chunks, size = [], 0
            while size <= limit:
                chunk = os.read(fd, 65536)
                if not chunk:
                    break
                chunks.append(chunk)
                size += len(chunk)
        finally:
            os.close(fd)
        if size > limit:
            raise OSError(errno.EFBIG, f"larger than {limit} bytes", str(self.path / name))
        return b"".join(chunks)

    def write_atomic(
        self, name: str, data: bytes, *, mode: int = 0o644, owner: int | None = None, group: int | None = None
    ) -> None:
        """Replace ``name`` with ``data`` (temp file, fsync, rename, directory fsync); ``owner``
        (a uid) and ``group`` (a gid) own it when given (root only)."""
        temporary = f".{name}.tmp-{secrets.token_hex(8)}"
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(temporary, flags, mode, dir_fd=self.fd)
        try:
            try:
                os.fchmod(fd, mode)  # the umask may have taken bits off
                if owner is not None or group is not None:
                    os.fchown(fd, -1 if owner is None else owner, -1 if group is None else group)
                view = memoryview(data)
                while view:
                    written = os.write(fd, view)
                    view = view[written:]
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(temporary, name, src_dir_fd=self.fd, dst_dir_fd=self.fd)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temporary, dir_fd=self.fd)
            raise
        os.fsync(self.fd)

    def replace(self, source: str, target: str) -> None:
        """Rename ``source`` over ``target`` (names, never followed), then sync."""
        os.replace(source, target, src_dir_fd=self.fd, dst_dir_fd=self.fd)
        os.fsync(self.fd)

    def remove(self, name: str) -> bool:
        """Remove the entry ``name`` (a link itself, not what it points to); whether it was there."""
        try:
            os.unlink(name, dir_fd=self.fd)
        except FileNotFoundError:
            return False
        return True

    def names(self) -> list[str]:
        return sorted(os.listdir(self.fd))

    def open_append(self, name: str, mode: int) -> int:
        """A descriptor to append to ``name``, a regular file of this user's own with one link.

        Anything else under that name (a link, a FIFO, another user's file, a hard link to
        some other file) is removed first and the file made anew: the directory may be shared
        with another account, which could have put anything there.
        """
        flags = os.O_WRONLY | os.O_APPEND | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
        try:
            fd = os.open(name, flags, dir_fd=self.fd)
        except FileNotFoundError:
            fd = -1
        except OSError as exc:
            if exc.errno not in (errno.ELOOP, errno.ENXIO):  # a link; a FIFO without a reader
                raise
            fd = -1
            self.remove(name)
        if fd >= 0:
            info = os.fstat(fd)
            if stat.S_ISREG(info.st_mode) and info.st_uid == os.geteuid() and info.st_nlink == 1:
                os.set_blocking(fd, True)
                return fd
            os.close(fd)
            self.remove(name)
        fd = os.open(name, flags | os.O_CREAT | os.O_EXCL, mode, dir_fd=self.fd)
        os.fchmod(fd, mode)
        os.set_blocking(fd, True)
        return fd


def write_atomic(
    path: Path, data: bytes, *, mode: int = 0o644, group: int | None = None, owner: int | None = None
) -> None:
    """Replace ``path`` with ``data`` (see :meth:`Directory.write_atomic`)."""
    with Directory(path.parent) as directory:
        directory.write_atomic(path.name, data, mode=mode, owner=owner, group=group)


def write_json_atomic(
    path: Path, document: Any, *, mode: int = 0o644, group: int | None = None, owner: int | None = None
) -> None:
    data = (json.dumps(document, indent=2, sort_keys=True) + "\n").encode()
    write_atomic(path, data, mode=mode, group=group, owner=owner)


def read_no_follow(path: Path, limit: int = MAX_READ_BYTES) -> bytes:
    """The content of the regular file ``path``, never through a link in its last component."""
    with Directory(path.parent) as directory:
        return directory.read_bytes(path.name, limit)


def sync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def remove_if_present(path: Path) -> bool:
    """Remove ``path`` (a link itself, not its target); whether it was there."""
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    return True


def flock_within(fd: int, timeout: float, poll: float = 0.02) -> bool:
    """Take an exclusive ``flock`` on ``fd``, waiting up to ``timeout`` seconds (0: only try);
    whether it was taken. Closing ``fd`` releases it."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if time.monotonic() >= deadline:
                return False
            time.sleep(poll)
