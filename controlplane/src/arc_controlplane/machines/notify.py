"""Wakes agents' long-polls when there is new work for their machine.

Writers bump ``Machine.generation`` in the database and then call ``Notifier.notify(vm_id)``
(from any thread). A long-poll waits on ``Notifier.wait(vm_id, timeout)``, which returns early
when notified; waiters re-read the generation from the database, so a lost or spurious wake-up
costs nothing but a query. Waiters are kept only while someone waits: idle machines cost nothing.
"""

from __future__ import annotations

import asyncio
import threading


class Notifier:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiters: dict[str, set[tuple[asyncio.AbstractEventLoop, asyncio.Event]]] = {}
        self._closed = False

    def notify(self, vm_id: str) -> None:
        """Wake every waiter of ``vm_id``; safe to call from any thread, or with no one waiting."""
        with self._lock:
            waiters = list(self._waiters.get(vm_id.lower(), ()))
        for loop, event in waiters:
            loop.call_soon_threadsafe(event.set)

    def close(self) -> None:
        """Wake every waiter, and make later waits return at once: the server is stopping.

        Long-polls then answer at once instead of holding the shutdown until they are cancelled.
        """
        with self._lock:
            self._closed = True
            waiters = [entry for entries in self._waiters.values() for entry in entries]
        for loop, event in waiters:
            loop.call_soon_threadsafe(event.set)

    @property
    def closed(self) -> bool:
        return self._closed

    async def wait(self, vm_id: str, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for a notification; True when one came (or on close)."""
        key = vm_id.lower()
        entry = (asyncio.get_running_loop(), asyncio.Event())
        with self._lock:
            if self._closed:
                return True
            self._waiters.setdefault(key, set()).add(entry)
        try:
            await asyncio.wait_for(entry[1].wait(), timeout)
            return True
        except TimeoutError:
            return False
        finally:
            with self._lock:
                waiters = self._waiters.get(key)
                if waiters is not None:
                    waiters.discard(entry)
                    if not waiters:
                        del self._waiters[key]

    def waiting(self) -> int:
        """How many long-polls are waiting (for tests and metrics)."""
        with self._lock:
            return sum(len(w) for w in self._waiters.values())
