"""The connection state as himds sees it: ``agentconfig.json``, read again only when it changes.

``azcmagent connect`` and ``disconnect`` replace or remove the file (atomically), so a change of
inode, size or times means a new state. A ``stat`` per request is all the cost when nothing
changed, and the same :class:`ConnectionState` object comes back, so what is rendered from it
(the instance metadata) is rendered once.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

from arc_agent.config.connection import ConnectionState, load_state
from arc_agent.errors import AzcmError

_Signature = tuple[int, int, int, int, int]


class StateFileWatcher:
    """Callable: the current connection state, or None when the machine is not connected.

    A state file that cannot be used raises the :class:`AzcmError` of ``load_state`` (with
    the way out) until the file changes.
    """

    def __init__(self, path: Path) -> None:
        self._path = path
        self._lock = threading.Lock()
        self._signature: _Signature | None = None
        self._current: tuple[ConnectionState | None, AzcmError | None] = (None, None)

    def __call__(self) -> ConnectionState | None:
        signature = self._stat()
        if signature != self._signature:
            with self._lock:
                if signature != self._signature:
                    self._load(signature)
        state, error = self._current
        if error is not None:
            raise error
        return state

    def _stat(self) -> _Signature | None:
        try:
            st = os.stat(self._path)
        except FileNotFoundError:
            return None
        except OSError:
            return (-1, -1, -1, -1, -1)  # unreadable: load_state says why
        return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)

    def _load(self, signature: _Signature | None) -> None:
        state: ConnectionState | None = None
        error: AzcmError | None = None
        if signature is not None:
            try:
                state = load_state(self._path)
            except AzcmError as exc:
                error = exc
        self._current = (state, error)
        self._signature = signature
