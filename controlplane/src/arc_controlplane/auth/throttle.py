"""Failed sign-ins, limited (issue 10, finding 4).

Wrong secrets used to be checked at 48 a second (about 40 ms of scrypt each), unknown client
ids at 263 a second, never a 429; concurrent attempts drove the server to 651 MB; every failure
added an audit row. Here failures are counted in token buckets, and a client that has used up
its allowance gets 429 with ``Retry-After`` *before* anything costly is done:

===================================  ===========  ==================
bucket                               burst        then
===================================  ===========  ==================
one client id from one address       10 failures  1 every 10 s
one address, any client id           30 failures  1 every 5 s
one client id, from anywhere         100 failures 1 a second
===================================  ===========  ==================

A successful sign-in is not counted, so a fleet job that signs in correctly is not slowed;
the first bucket keeps an attacker at another address from locking a real client out, and the
last one bounds what many addresses can try against one secret. Memory is bounded: at most
``max_keys`` buckets are kept, the least recently used go first (a forgotten bucket starts
full again, which only ever errs towards letting a client in). Secret checks themselves run at
most ``max_concurrent_checks`` at a time, on threads of their own (:meth:`SignInThrottle.check`).
"""

from __future__ import annotations

import collections
import concurrent.futures
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

MAX_KEYS = 100_000
MAX_CONCURRENT_CHECKS = 2


@dataclass(frozen=True)
class Rule:
    burst: int
    every: float
    """Seconds for one failure to be allowed again."""


PER_CLIENT_AND_ADDRESS = Rule(burst=10, every=10.0)
PER_ADDRESS = Rule(burst=30, every=5.0)
PER_CLIENT = Rule(burst=100, every=1.0)


@dataclass
class _Bucket:
    tokens: float
    updated: float


class SignInThrottle:
    """Counts failed sign-ins per client and address; thread-safe."""

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = MAX_KEYS,
        max_concurrent_checks: int = MAX_CONCURRENT_CHECKS,
    ) -> None:
        self._clock = clock
        self._max_keys = max_keys
        self._buckets: collections.OrderedDict[tuple[str, str], _Bucket] = collections.OrderedDict()
        self._lock = threading.Lock()
        self._checkers = concurrent.futures.ThreadPoolExecutor(
            max_workers=max_concurrent_checks, thread_name_prefix="secret-check"
        )

    def check(self, verify: Callable[[], bool]) -> bool:
        """``verify()`` (a client secret's scrypt check) on one of ``max_concurrent_checks``
        threads of its own, whichever thread asks.

        A semaphore would bound how many run at once but not which threads run them: glibc
        keeps each freed 16 MiB scrypt buffer in the arena of the thread that used it, so the
        general pool's 40 threads grew the server to over 600 MiB. Two threads, two arenas.
        """
        return self._checkers.submit(verify).result()

    def attempt(self, client_id: str | None, address: str) -> int | None:
        """Take one attempt from every bucket of this client and address; or, when one of them
        is empty, take nothing and return the seconds to wait.

        Taken before the credential is checked, so that requests arriving together cannot
        all pass while none has failed yet; :meth:`succeeded` gives it back.
        """
        with self._lock:
            now = self._clock()
            buckets = [
                (self._peek(key, rule, now) or self._new(key, rule, now), rule)
                for key, rule in self._keys(client_id, address)
            ]
            wait = max(self._wait(bucket, rule) for bucket, rule in buckets)
            if wait > 0:
                return math.ceil(wait)
            for bucket, _ in buckets:
                bucket.tokens -= 1
        return None

    def succeeded(self, client_id: str | None, address: str) -> None:
        """The attempt signed in: give it back (sign-ins that succeed are not counted)."""
        with self._lock:
            now = self._clock()
            for key, rule in self._keys(client_id, address):
                bucket = self._peek(key, rule, now)
                if bucket is not None:
                    bucket.tokens = min(float(rule.burst), bucket.tokens + 1)

    def retry_after(self, client_id: str | None, address: str) -> int | None:
        """Seconds until this client may try again from this address; None when it may now."""
        with self._lock:
            now = self._clock()
            waits = [
                self._wait(bucket, rule)
                for key, rule in self._keys(client_id, address)
                if (bucket := self._peek(key, rule, now)) is not None
            ]
        wait = max(waits, default=0.0)
        return math.ceil(wait) if wait > 0 else None

    def size(self) -> int:
        with self._lock:
            return len(self._buckets)

    @staticmethod
    def _keys(client_id: str | None, address: str) -> list[tuple[tuple[str, str], Rule]]:
        keys = [(("address", address), PER_ADDRESS)]
        if client_id:
            keys += [
                (("pair", f"{client_id} {address}"), PER_CLIENT_AND_ADDRESS),
                (("client", client_id), PER_CLIENT),
            ]
        return keys

    def _peek(self, key: tuple[str, str], rule: Rule, now: float) -> _Bucket | None:
        bucket = self._buckets.get(key)
        if bucket is None:
            return None
        bucket.tokens = min(float(rule.burst), bucket.tokens + (now - bucket.updated) / rule.every)
        bucket.updated = now
        self._buckets.move_to_end(key)
        return bucket

    def _new(self, key: tuple[str, str], rule: Rule, now: float) -> _Bucket:
        while len(self._buckets) >= self._max_keys:
            self._buckets.popitem(last=False)
        bucket = self._buckets[key] = _Bucket(float(rule.burst), now)
        return bucket

    @staticmethod
    def _wait(bucket: _Bucket, rule: Rule) -> float:
        """Seconds until the bucket holds one whole failure again (0 when it does)."""
        return 0.0 if bucket.tokens >= 1 else (1 - bucket.tokens) * rule.every
