"""Per-key rate limits shared by every API process: token buckets in Redis.

With ``CONVOI_REDIS_URL`` set, :class:`RedisRateLimiter` keeps each key's bucket in one Redis
hash (``convoi:rl:<key id>``), updated by one Lua script, so the check-and-take is atomic and the
clock is Redis's own (``TIME``): N API processes share one budget, whatever their clocks say. The
bucket is the same as the in-process :class:`~convoi.controlplane.limits.TokenBucket`: a burst of
``per_minute`` requests, refilled evenly; an idle key's hash expires once it would be full.

Redis unreachable or failing (connection refused, a timeout of :data:`REDIS_TIMEOUT_SECONDS`, an
error): the request is **not** refused. The limiter logs one warning naming the Redis address (no
key, no secret), then counts in this process alone (each process enforces the whole budget, so a
key may get up to N times it) and tries Redis again after :data:`RETRY_SECONDS`; a line is logged
when Redis answers again. A rate limiter that turned a Redis outage into 503s for everyone
would be an outage of its own; the per-process fallback still stops a single client's flood.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import redis.asyncio as aioredis
from redis.commands.core import AsyncScript
from redis.exceptions import RedisError

from convoi.controlplane.limits import RateLimiter, too_many
from convoi.controlplane.log import logger

__all__ = ["KEY_PREFIX", "REDIS_TIMEOUT_SECONDS", "RETRY_SECONDS", "RedisRateLimiter"]

KEY_PREFIX = "convoi:rl:"
REDIS_TIMEOUT_SECONDS = 0.5
"""Connecting to Redis and each command; past it the request is counted in process."""
RETRY_SECONDS = 5.0
"""After a failure, Redis is left alone for this long (requests do not each wait for it)."""

_TAKE = """
local capacity = tonumber(ARGV[1])
local rate = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'updated')
local tokens = tonumber(state[1]) or capacity
local updated = tonumber(state[2]) or now
tokens = math.min(capacity, tokens + math.max(0, now - updated) * rate)
local wait = 0
if tokens >= 1 then tokens = tokens - 1 else wait = (1 - tokens) / rate end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'updated', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil((capacity - tokens) / rate * 1000) + 1000)
return tostring(wait)
"""


def _address(url: str) -> str:
    """``host:port/db`` of a Redis URL, without credentials (for logs)."""
    rest = url.split("://", 1)[-1]
    return rest.rsplit("@", 1)[-1]


class RedisRateLimiter:
    """:class:`~convoi.controlplane.limits.RequestRateLimiter` backed by Redis (module doc)."""

    def __init__(self, url: str, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.address = _address(url)
        self._url = url
        self._clock = clock
        self._local = RateLimiter(clock)
        self._client: aioredis.Redis | None = None
        self._script: AsyncScript | None = None
        self._down_until = 0.0
        self._down = False

    def _redis(self) -> aioredis.Redis:
        if self._client is None:  # made in the serving event loop, on first use
            self._client = aioredis.Redis.from_url(
                self._url,
                socket_timeout=REDIS_TIMEOUT_SECONDS,
                socket_connect_timeout=REDIS_TIMEOUT_SECONDS,
                health_check_interval=30,
            )
        return self._client

    async def acquire(self, key_id: str, per_minute: int) -> None:
        """Count one request of ``key_id`` in Redis (in process while Redis is down)."""
        if per_minute <= 0:
            return
        if self._clock() < self._down_until:
            self._local.check(key_id, per_minute)
            return
        try:
            wait = float(await self._take(key_id, per_minute))
        except (RedisError, OSError, TimeoutError) as exc:
            self._failed(exc)
            self._local.check(key_id, per_minute)
            return
        if self._down:
            self._down = False
            logger.warning("Redis at %s answers again: rate limits shared again", self.address)
        if wait > 0:
            raise too_many(per_minute, wait)

    async def _take(self, key_id: str, per_minute: int) -> bytes:
        if self._script is None:  # EVALSHA: the script is sent once, not with every request
            self._script = self._redis().register_script(_TAKE)
        result = await self._script(keys=[KEY_PREFIX + key_id], args=[per_minute, per_minute / 60])
        return bytes(result)

    def _failed(self, exc: BaseException) -> None:
        self._down_until = self._clock() + RETRY_SECONDS
        if not self._down:
            self._down = True
            logger.warning(
                "Redis at %s unreachable (%s): rate limits counted per API process until it "
                "answers (retried every %.0f s)",
                self.address,
                type(exc).__name__,
                RETRY_SECONDS,
            )

    async def aclose(self) -> None:
        """Close the connection pool."""
        client, self._client = self._client, None
        self._script = None
        if client is not None:
            await client.aclose()
