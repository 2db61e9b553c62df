"""A rate limit shared by every worker process through Redis (a sliding-window log)."""

from __future__ import annotations

import asyncio
import uuid
from typing import Final, Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from jobqueue.constants import KEY_PREFIX
from jobqueue.errors import RetryableJobError

RATE_LIMIT_KEY_PREFIX: Final = f"{KEY_PREFIX}:ratelimit:"
# Keys outlive their window by this much so a slow clock read never drops a live entry.
_EXPIRY_MARGIN_MS: Final = 1000

# One atomic step: drop entries older than the window, then either record this call or say how long
# until the oldest entry that blocks it leaves the window. Times come from Redis' TIME so that every
# process agrees, in integer microseconds, built as strings because Lua's number-to-string
# conversion keeps only 14 significant digits.
# KEYS[1] the zset; ARGV: limit, period in microseconds, a unique member.
# Returns {granted (0/1), now_us, wait_us}.
_ACQUIRE_LUA: Final = """
local key = KEYS[1]
local limit = tonumber(ARGV[1])
local period = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
redis.call('ZREMRANGEBYSCORE', key, '-inf', string.format('%d', now - period))
local count = redis.call('ZCARD', key)
if count < limit then
  redis.call('ZADD', key, string.format('%d', now), ARGV[3])
  redis.call('PEXPIRE', key, math.ceil(period / 1000) + tonumber(ARGV[4]))
  return {1, now, 0}
end
local blocker = redis.call('ZRANGE', key, count - limit, count - limit, 'WITHSCORES')
return {0, now, tonumber(blocker[2]) + period - now}
"""


class RateLimitSettings(BaseSettings):
    """Calls per window allowed per provider, across all workers; 0 means unlimited.

    The window is a minute unless ``LLM_RATE_LIMIT_PERIOD`` (seconds) says otherwise.
    """

    model_config = SettingsConfigDict(env_prefix="", extra="ignore")

    llm_rate_limit_per_minute: int = Field(0, ge=0)
    embedding_rate_limit_per_minute: int = Field(0, ge=0)
    llm_rate_limit_period: float = Field(60.0, gt=0)
    # How long a job waits for a slot before it gives up and is retried later (seconds).
    llm_rate_limit_max_wait: float = Field(30.0, ge=0)


class RateLimiter:
    """At most ``limit`` acquisitions per ``period`` seconds, summed over all processes.

    The window lives in the sorted set ``jq:ratelimit:<name>``; the key expires once idle.
    """

    def __init__(self, redis: Redis, name: str, limit: int, period: float = 60.0) -> None:
        if limit < 1:
            raise ValueError(f"rate limit must be at least 1 per period, got {limit}")
        if period <= 0:
            raise ValueError(f"rate limit period must be positive, got {period}")
        self.name = name
        self.key = RATE_LIMIT_KEY_PREFIX + name
        self.limit = limit
        self.period = period
        self._period_us = round(period * 1_000_000)
        self._redis = redis
        # redis-py's Script calls EVALSHA and loads the script on a NOSCRIPT reply.
        self._script = redis.register_script(_ACQUIRE_LUA)

    async def acquire(self, timeout: float | None = None) -> float:
        """Wait for a free slot and take it; return the Redis time of the acquisition (seconds).

        Raises ``RetryableJobError`` (with ``retry_after``) at once when the next slot is further
        away than ``timeout`` allows, or when Redis cannot be reached.
        """
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        member = uuid.uuid4().hex
        while True:
            try:
                granted, now_us, wait_us = await self._script(
                    keys=[self.key],
                    args=[self.limit, self._period_us, member, _EXPIRY_MARGIN_MS],
                )
            except (RedisConnectionError, RedisTimeoutError) as exc:
                raise RetryableJobError(f"rate limiter {self.name!r} could not reach Redis: {exc}") from exc
            if granted:
                return int(now_us) / 1_000_000
            wait = int(wait_us) / 1_000_000
            if deadline is not None and loop.time() + wait > deadline:
                raise RetryableJobError(
                    f"rate limit {self.name!r} ({self.limit} per {self.period:g}s) has no free slot for {wait:.3f}s",
                    retry_after=wait,
                )
            # Sleep exactly until the blocking entry leaves the window; others may win the slot,
            # in which case the script tells us the next wait.
            await asyncio.sleep(wait)


RateLimitKind = Literal["chat", "embeddings"]


def rate_limiter_for(
    redis: Redis, provider: str, kind: RateLimitKind, settings: RateLimitSettings | None = None
) -> RateLimiter | None:
    """The shared limiter ``jq:ratelimit:<provider>:<kind>``, or None when its limit is 0."""
    settings = settings or RateLimitSettings()
    per_minute = settings.llm_rate_limit_per_minute if kind == "chat" else settings.embedding_rate_limit_per_minute
    if per_minute == 0:
        return None
    return RateLimiter(redis, f"{provider}:{kind}", per_minute, settings.llm_rate_limit_period)
