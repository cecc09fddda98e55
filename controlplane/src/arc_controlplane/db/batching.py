"""Many small writes in few transactions, off the event loop: the heartbeat path's engine.

A route awaits ``BatchedWrites.run(item)``; writer threads take whatever items are waiting
(up to ``max_batch``), run ``work(connection, items)`` on them in one transaction, commit once,
and hand every result back to its event loop. Under load a batch holds as many items as
arrived while the previous one committed, so a commit (and, on SQLite, the single writer
lock) is paid once per batch instead of once per request, and no request waits for a thread
of the general pool. When idle, a lone item is written at once: nothing waits for a timer.

``work`` returns one result per item, in order; expected refusals (an invalid assertion, say)
are results too, never exceptions, because an exception rolls the whole transaction back: the
items of that batch are then written again one by one, each in a transaction of its own, so
that only the item that raised gets the exception (unless the database itself failed, full or
unreachable: then every item gets that failure at once, :mod:`.failures`). Items are given in the order of
``order_by`` (row locks are then taken in one order, so two writer threads seldom wait on
each other on PostgreSQL; should they deadlock, the database aborts one batch, which is then
written item by item).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from sqlalchemy import Connection, Engine

from arc_controlplane.db.failures import storage_failure

LOG = logging.getLogger(__name__)

Item = TypeVar("Item")
Result = TypeVar("Result")

DEFAULT_MAX_BATCH = 256


class WriterClosed(RuntimeError):
    """The writer was closed (the server is stopping)."""


@dataclass
class _Pending(Generic[Item, Result]):
    item: Item
    future: asyncio.Future[Result]
    loop: asyncio.AbstractEventLoop


class BatchedWrites(Generic[Item, Result]):
    def __init__(
        self,
        engine: Engine,
        work: Callable[[Connection, list[Item]], list[Result]],
        *,
        order_by: Callable[[Item], str],
        threads: int = 1,
        lock: Callable[[], contextlib.AbstractContextManager[object]] = contextlib.nullcontext,
        max_batch: int = DEFAULT_MAX_BATCH,
        name: str = "batched-writes",
    ) -> None:
        if threads < 1 or max_batch < 1:
            raise ValueError("threads and max_batch must be at least 1")
        self._engine = engine
        self._work = work
        self._order_by = order_by
        self._lock = lock
        self._max_batch = max_batch
        self._queue: queue.SimpleQueue[_Pending[Item, Result] | None] = queue.SimpleQueue()
        self._threads = [
            threading.Thread(target=self._serve, name=f"{name}-{i}", daemon=True) for i in range(threads)
        ]
        self._closed = False
        self._start_lock = threading.Lock()
        self._started = False

    async def run(self, item: Item) -> Result:
        """``work(connection, item)``'s result once its transaction has committed."""
        if self._closed:
            raise WriterClosed("the server is stopping")
        self._ensure_started()
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Result] = loop.create_future()
        self._queue.put(_Pending(item, future, loop))
        return await future

    def close(self) -> None:
        """Stop the threads once the items already queued are written."""
        with self._start_lock:
            self._closed = True
            started, self._started = self._started, False
        if not started:
            return
        for _ in self._threads:
            self._queue.put(None)
        for thread in self._threads:
            thread.join()

    def _ensure_started(self) -> None:
        if self._started:
            return
        with self._start_lock:
            if self._started or self._closed:
                return
            for thread in self._threads:
                thread.start()
            self._started = True

    def _serve(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch = [first]
            stop = False
            while len(batch) < self._max_batch:
                try:
                    pending = self._queue.get_nowait()
                except queue.Empty:
                    break
                if pending is None:
                    stop = True
                    break
                batch.append(pending)
            batch.sort(key=lambda p: self._order_by(p.item))
            self._write(batch)
            if stop:
                return

    def _write(self, batch: list[_Pending[Item, Result]]) -> None:
        """Write ``batch`` in one transaction; if that fails, each of its items alone."""
        try:
            results = self._transaction([pending.item for pending in batch])
        except Exception as exc:  # handed to the request(s) it belongs to
            if len(batch) == 1 or storage_failure(exc) is not None:
                _fail(batch, exc)  # a full or unreachable database fails every item alike
                return
            for pending in batch:
                self._write([pending])
            return
        _resolve(batch, results)

    def _transaction(self, items: list[Item]) -> list[Result]:
        with self._lock(), self._engine.begin() as connection:
            results = self._work(connection, items)
            if len(results) != len(items):  # a bug: roll back rather than guess
                raise RuntimeError(f"batched work gave {len(results)} results for {len(items)} items")
        return results


def _resolve(batch: list[_Pending[Item, Result]], results: list[Result]) -> None:
    _settle([(pending, result, None) for pending, result in zip(batch, results, strict=True)])


def _fail(batch: list[_Pending[Item, Result]], error: BaseException) -> None:
    outcomes: list[_Outcome[Item, Result]] = [(pending, None, error) for pending in batch]
    _settle(outcomes)


_Outcome = tuple[_Pending[Item, Result], Result | None, BaseException | None]


def _settle(outcomes: list[_Outcome[Item, Result]]) -> None:
    """Hand the outcomes to their event loops: one wake-up per loop, not one per item."""
    by_loop: dict[asyncio.AbstractEventLoop, list[_Outcome[Item, Result]]] = {}
    for outcome in outcomes:
        by_loop.setdefault(outcome[0].loop, []).append(outcome)
    for loop, settled in by_loop.items():
        try:
            loop.call_soon_threadsafe(_set_outcomes, settled)
        except RuntimeError:  # the loop is closed: nobody waits for these results any more
            LOG.debug("%d results of batched writes dropped: their event loop is closed", len(settled))


def _set_outcomes(outcomes: list[_Outcome[Item, Result]]) -> None:
    for pending, result, error in outcomes:
        if pending.future.done():  # the request was cancelled (its client went away)
            continue
        if error is not None:
            pending.future.set_exception(error)
        else:
            pending.future.set_result(result)  # type: ignore[arg-type]
