"""Per-key request rate limits and per-account call admission, in process (one API replica).

:class:`RateLimiter` keeps a token bucket per API key: a key may send ``per_minute`` requests at
once, and the bucket refills evenly over a minute (``per_minute / 60`` per second). An empty
bucket answers :class:`~convoi.controlplane.errors.TooManyRequests` ``rate_limited`` with the
seconds until the next token (``Retry-After``). Publishable keys get a tighter budget than secret
keys (they ship in web pages). :class:`AccountLocks` serialises "count the account's live calls,
then insert one" per account, so concurrent creates cannot overshoot the concurrency limit.

Pure logic plus locks, no I/O; the clock is injectable for tests. With several API processes
each counts its own share unless ``CONVOI_REDIS_URL`` is set: then
:class:`~convoi.controlplane.redis_limits.RedisRateLimiter` keeps the buckets in Redis (both
satisfy :class:`RequestRateLimiter`). The concurrency limit's count is the database's, under a
database lock (:func:`~convoi.controlplane.db.locks.lock_account`), so it holds across processes.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from convoi.controlplane.errors import TooManyRequests

__all__ = ["AccountLocks", "RateLimiter", "RequestRateLimiter", "TokenBucket", "too_many"]

_MAX_KEYS = 100_000
"""Buckets kept before the full ones (idle keys) are forgotten."""


@dataclass(slots=True)
class TokenBucket:
    """``tokens`` left of ``capacity``, refilled at ``rate`` per second since ``updated``."""

    capacity: float
    rate: float
    tokens: float
    updated: float

    def take(self, now: float) -> float:
        """Take one token; returns 0 if taken, else the seconds until one is available."""
        self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens >= 1:
            self.tokens -= 1
            return 0.0
        return (1 - self.tokens) / self.rate


class RequestRateLimiter(Protocol):
    """What the request guard counts requests with."""

    async def acquire(self, key_id: str, per_minute: int) -> None:
        """Count one request of ``key_id``; :class:`TooManyRequests` if over its budget."""
        ...

    async def aclose(self) -> None:
        """Release connections (the app is shutting down)."""
        ...


def too_many(per_minute: int, wait: float) -> TooManyRequests:
    """The 429 ``rate_limited`` answer for a key over ``per_minute``, ``wait`` s from a token."""
    return TooManyRequests(
        f"rate limit of this API key reached ({per_minute} requests per minute); "
        f"retry in {math.ceil(wait)} s",
        code="rate_limited",
        retry_after=max(1, math.ceil(wait)),
    )


class RateLimiter:
    """Token buckets per key id; ``per_minute`` 0 means unlimited. Thread-safe."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._buckets: dict[str, TokenBucket] = {}
        self._lock = threading.Lock()

    def check(self, key_id: str, per_minute: int) -> None:
        """Count one request of ``key_id``; :class:`TooManyRequests` if over its budget."""
        if per_minute <= 0:
            return
        now = self._clock()
        with self._lock:
            bucket = self._buckets.get(key_id)
            if bucket is None:
                if len(self._buckets) >= _MAX_KEYS:
                    self._forget_idle(now)
                bucket = TokenBucket(per_minute, per_minute / 60, per_minute, now)
                self._buckets[key_id] = bucket
            wait = bucket.take(now)
        if wait:
            raise too_many(per_minute, wait)

    async def acquire(self, key_id: str, per_minute: int) -> None:
        """:meth:`check` (no I/O: it never waits)."""
        self.check(key_id, per_minute)

    async def aclose(self) -> None:
        """Nothing to release."""

    def _forget_idle(self, now: float) -> None:
        full = [
            key
            for key, b in self._buckets.items()
            if b.tokens + (now - b.updated) * b.rate >= b.capacity
        ]
        for key in full:
            del self._buckets[key]


class AccountLocks:
    """One lock per account (created on first use)."""

    def __init__(self) -> None:
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def lock(self, account_id: str) -> threading.Lock:
        """The account's lock."""
        with self._guard:
            return self._locks.setdefault(account_id, threading.Lock())
