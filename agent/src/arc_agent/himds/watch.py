"""himds learns of a new connection state from the file itself, not only from the CLI's word.

``azcmagent connect`` and ``disconnect`` tell himds over its socket once they have written or
removed ``agentconfig.json``. A command killed between the two (``kill -9``, a power cut) used
to leave himds on the old state: heartbeating for a machine that was just reset, or idle for
one just connected, until it was restarted (issue 10: "after restart the host is in one
consistent state that show reports truthfully"). So himds also watches the state directory with
inotify: a thread blocked in ``read`` (no timer, no cost while nothing happens) calls back when
``agentconfig.json`` is created, replaced or removed. Linux only; where inotify cannot be had,
the socket remains the only way, as before.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import struct
import threading
from collections.abc import Callable
from pathlib import Path

IN_CLOSE_WRITE = 0x00000008
IN_MOVED_FROM = 0x00000040
IN_MOVED_TO = 0x00000080
IN_CREATE = 0x00000100
IN_DELETE = 0x00000200
IN_CLOEXEC = 0o2000000
_MASK = IN_CLOSE_WRITE | IN_MOVED_FROM | IN_MOVED_TO | IN_CREATE | IN_DELETE
_EVENT = struct.Struct("iIII")


class StateFileWatch:
    """Calls ``on_change`` (on its own thread) whenever the file ``path`` appears, is replaced or
    goes; ``close`` ends it."""

    def __init__(self, path: Path, on_change: Callable[[], None], logger: logging.Logger) -> None:
        self._name = os.fsencode(path.name)
        self._on_change = on_change
        self._logger = logger
        self._fd = -1
        self._closing = False
        try:
            # the C library the interpreter already has (dlopen of the program itself), not
            # ctypes.util.find_library: that runs ldconfig and loads shutil and tempfile, which
            # himds would then carry for as long as it runs (docs/architecture.md, "Footprint")
            libc = ctypes.CDLL(None, use_errno=True)
            fd = libc.inotify_init1(IN_CLOEXEC)
            if fd < 0:
                raise OSError(ctypes.get_errno(), "inotify_init1")
            if libc.inotify_add_watch(fd, os.fsencode(path.parent), _MASK) < 0:
                error = ctypes.get_errno()
                os.close(fd)
                raise OSError(error, "inotify_add_watch")
        except (OSError, AttributeError) as exc:
            logger.warning(
                "cannot watch %s (%s): connect and disconnect reach himds by its socket only", path, exc
            )
            self._thread: threading.Thread | None = None
            return
        self._fd = fd
        self._thread = threading.Thread(target=self._run, name="himds-statewatch", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._closing = True
        if self._fd >= 0:
            with contextlib.suppress(OSError):
                # Linux does not wake a read in progress: it ends at the next event (then sees
                # _closing) or with the process (a daemon thread); the next read gets EBADF.
                os.close(self._fd)
            self._fd = -1

    def _run(self) -> None:
        while not self._closing:
            try:
                data = os.read(self._fd, 65536)
            except OSError:
                return
            if not data:
                return
            if any(name == self._name for name in _names(data)):
                try:
                    self._on_change()
                except Exception:  # a failed reload must not end the watch
                    self._logger.exception("reloading after a change of the connection state failed")


def _names(data: bytes) -> list[bytes]:
    names, offset = [], 0
    while offset + _EVENT.size <= len(data):
        _, _, _, length = _EVENT.unpack_from(data, offset)
        start = offset + _EVENT.size
        names.append(data[start : start + length].rstrip(b"\0"))
        offset = start + length
    return names
