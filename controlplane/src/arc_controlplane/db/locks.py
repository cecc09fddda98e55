"""Writes of one resource, one at a time, in this process.

A management write that checks a condition first (``If-Match``) must not be overtaken between
its read and its write. PostgreSQL gets ``SELECT ... FOR UPDATE`` for that; SQLite's
transactions lock nothing before they write, so writes of the same resource also take one of
these locks (the control plane is one process: the locks cover every writer of the API).
"""

from __future__ import annotations

import threading
import zlib
from collections.abc import Iterator
from contextlib import contextmanager

STRIPES = 64


class KeyedLocks:
    def __init__(self, stripes: int = STRIPES) -> None:
        self._locks = [threading.Lock() for _ in range(stripes)]

    @contextmanager
    def hold(self, key: str) -> Iterator[None]:
        """Hold the lock of ``key`` (case-insensitive: ARM ids are) for the block."""
        lock = self._locks[zlib.crc32(key.lower().encode()) % len(self._locks)]
        with lock:
            yield
