"""A small file system that a test can fill to the last byte (the full-disk cases)."""

from __future__ import annotations

import contextlib
import os
import pathlib
import subprocess
import tempfile
from collections.abc import Iterator


@contextlib.contextmanager
def small_filesystem(size: str) -> Iterator[pathlib.Path]:
    """A tmpfs of ``size`` (``24m``) mounted on a new directory for the block (needs root)."""
    mountpoint = pathlib.Path(tempfile.mkdtemp(prefix="arc-small-fs-"))
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(mountpoint)], check=True
    )
    try:
        yield mountpoint
    finally:
        subprocess.run(["umount", "-l", str(mountpoint)], check=False)
        mountpoint.rmdir()


def fill(filesystem: pathlib.Path) -> pathlib.Path:
    """Write a file until ``filesystem`` has no byte left; return it (delete it to free space)."""
    filler = filesystem / "filler"
    chunk = b"\0" * (1 << 20)
    descriptor = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        for size in (1 << 20, 1 << 12, 1):
            with contextlib.suppress(OSError):
                while True:
                    os.write(descriptor, chunk[:size])
    finally:
        os.close(descriptor)
    assert os.statvfs(filesystem).f_bavail == 0
    return filler
