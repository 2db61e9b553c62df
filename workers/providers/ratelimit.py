"""Rate limits shared by every worker process through Redis (sliding-window logs): requests per
window (``RateLimiter``) and tokens per window (``TokenRateLimiter``).

A limit's window lives on the Redis of the worker that takes from it, its queue's Redis
(``JOBQUEUE_<QUEUE>_REDIS_URL``, else ``REDIS_URL``): a queue on a Redis of its own keeps every key
of its own there and depends on no other server. Queues that share a limit (``LIMIT_USERS``) and sit
on different servers each count it on their own server, so together they may reach the limit once
per server; a worker says so at start-up. Keep such queues on one Redis, or give each server its
share of the limit (the ``*_PER_MINUTE`` variables of each queue's workers).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable
from typing import Any, Final, Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from jobqueue.constants import KEY_PREFIX, QueueName
from jobqueue.errors import PermanentJobError, RetryableJobError

logger = logging.getLogger("workers")

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


# The same window weighted: each entry costs its tokens. Members are "<unique>:<cost>"; the window's
# sum is kept beside it in KEYS[2] (rebuilt from the members when that key is missing) so a call
# costs O(entries that leave the window), not O(entries).
# KEYS[1] the zset, KEYS[2] the sum; ARGV: limit, period us, unique member, expiry margin ms, cost.
# Returns {granted (1) / wait (0) / never fits (-1), now_us, wait_us}.
_ACQUIRE_TOKENS_LUA: Final = """
local key, sum_key = KEYS[1], KEYS[2]
local limit = tonumber(ARGV[1])
local period = tonumber(ARGV[2])
local cost = tonumber(ARGV[5])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local function weight(member) return tonumber(string.match(member, ':(%d+)$')) or 0 end
local cutoff = string.format('%d', now - period)
local total = tonumber(redis.call('GET', sum_key) or '')
if total == nil then
  redis.call('ZREMRANGEBYSCORE', key, '-inf', cutoff)
  total = 0
  for _, m in ipairs(redis.call('ZRANGE', key, 0, -1)) do total = total + weight(m) end
else
  local expired = redis.call('ZRANGEBYSCORE', key, '-inf', cutoff)
  if #expired > 0 then
    for _, m in ipairs(expired) do total = total - weight(m) end
    redis.call('ZREMRANGEBYSCORE', key, '-inf', cutoff)
  end
end
if total < 0 then total = 0 end
if cost > limit then return {-1, now, 0} end
local ttl = math.ceil(period / 1000) + tonumber(ARGV[4])
if total + cost <= limit then
  redis.call('ZADD', key, string.format('%d', now), ARGV[3] .. ':' .. ARGV[5])
  redis.call('SET', sum_key, total + cost, 'PX', ttl)
  redis.call('PEXPIRE', key, ttl)
  return {1, now, 0}
end
redis.call('SET', sum_key, total, 'PX', ttl)
local freed = 0
local entries = redis.call('ZRANGE', key, 0, -1, 'WITHSCORES')
for i = 1, #entries, 2 do
  freed = freed + weight(entries[i])
  if total - freed + cost <= limit then
    return {0, now, tonumber(entries[i + 1]) + period - now}
  end
end
return {0, now, period}
"""


class RateLimitSettings(BaseSettings):
    """Calls per window allowed per provider, across all workers; 0 means unlimited.

    The window is a minute unless ``LLM_RATE_LIMIT_PERIOD`` (seconds) says otherwise.
    """

    model_config = SettingsConfigDict(env_prefix="", extra="ignore")

    llm_rate_limit_per_minute: int = Field(0, ge=0)
    embedding_rate_limit_per_minute: int = Field(0, ge=0)
    # Estimated input tokens of embedding requests per window (providers cap tokens as well).
    embedding_token_limit_per_minute: int = Field(0, ge=0)
    llm_rate_limit_period: float = Field(60.0, gt=0)
    # How long a job waits for a slot before it gives up and is retried later (seconds).
    llm_rate_limit_max_wait: float = Field(30.0, ge=0)
    # Pace by the limits the provider's rate-limit headers report (workers.providers.providerlimits); the
    # hand-set limits above stay in force as ceilings.
    llm_header_limits: bool = True


def _check_window(limit: int, period: float, what: str) -> None:
    if limit < 1:
        raise ValueError(f"{what} must be at least 1 per period, got {limit}")
    if period <= 0:
        raise ValueError(f"rate limit period must be positive, got {period}")


async def _take_slot(
    script: Any,
    keys: list[str],
    args: list[Any],
    timeout: float | None,
    *,
    unreachable: str,
    full: Callable[[float], str],
) -> float | None:
    """Run an acquire script until it grants (its Redis time, seconds) or answers -1 (None: can
    never fit); between tries, sleep exactly until the blocking entry leaves the window (others may
    win the slot, and the script then tells the next wait)."""
    loop = asyncio.get_running_loop()
    deadline = None if timeout is None else loop.time() + timeout
    while True:
        try:
            granted, now_us, wait_us = await script(keys=keys, args=args)
        except (RedisConnectionError, RedisTimeoutError) as exc:
            raise RetryableJobError(f"{unreachable}: {exc}") from exc
        if granted == 1:
            return int(now_us) / 1_000_000
        if granted == -1:
            return None
        wait = int(wait_us) / 1_000_000
        if deadline is not None and loop.time() + wait > deadline:
            raise RetryableJobError(full(wait), retry_after=wait)
        await asyncio.sleep(wait)


class RateLimiter:
    """At most ``limit`` acquisitions per ``period`` seconds, summed over all processes.

    The window lives in the sorted set ``jq:ratelimit:<name>``; the key expires once idle.
    """

    def __init__(self, redis: Redis, name: str, limit: int, period: float = 60.0) -> None:
        _check_window(limit, period, "rate limit")
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
        return await _take_slot(
            self._script,
            [self.key],
            [self.limit, self._period_us, uuid.uuid4().hex, _EXPIRY_MARGIN_MS],
            timeout,
            unreachable=f"rate limiter {self.name!r} could not reach Redis",
            full=lambda wait: (
                f"rate limit {self.name!r} ({self.limit} per {self.period:g}s) has no free slot for {wait:.3f}s"
            ),
        )


class TokenRateLimiter:
    """At most ``limit`` tokens per ``period`` seconds, summed over all processes.

    Each acquisition costs its tokens; the window lives in ``jq:ratelimit:<name>`` (entries) and
    ``jq:ratelimit:<name>:sum``, both expiring once idle.
    """

    def __init__(self, redis: Redis, name: str, limit: int, period: float = 60.0) -> None:
        _check_window(limit, period, "token limit")
        self.name = name
        self.key = RATE_LIMIT_KEY_PREFIX + name
        self.sum_key = self.key + ":sum"
        self.limit = limit
        self.period = period
        self._period_us = round(period * 1_000_000)
        self._script = redis.register_script(_ACQUIRE_TOKENS_LUA)

    async def acquire(self, timeout: float | None = None, *, cost: int) -> float:
        """Wait until ``cost`` tokens fit in the window and take them; return the Redis time.

        Raises ``RetryableJobError`` when they will not fit within ``timeout`` seconds or Redis
        cannot be reached, ``PermanentJobError`` when ``cost`` exceeds the whole limit.
        """
        if cost < 1:
            raise ValueError(f"a token cost must be at least 1, got {cost}")
        granted_at = await _take_slot(
            self._script,
            [self.key, self.sum_key],
            [self.limit, self._period_us, uuid.uuid4().hex, _EXPIRY_MARGIN_MS, cost],
            timeout,
            unreachable=f"token limit {self.name!r} could not reach Redis",
            full=lambda wait: (
                f"token limit {self.name!r} ({self.limit} per {self.period:g}s) has no room for "
                f"{cost} tokens for {wait:.3f}s"
            ),
        )
        if granted_at is None:
            raise PermanentJobError(
                f"a request of about {cost} tokens can never fit the token limit {self.name!r} "
                f"({self.limit} per {self.period:g}s)"
            )
        return granted_at


RateLimitKind = Literal["chat", "embeddings"]

# The queues whose workers take from each kind of provider limit (workers.settings' hooks).
LIMIT_USERS: Final[dict[str, tuple[str, ...]]] = {
    "chat": (QueueName.PRODUCT_ENRICHMENT.value, QueueName.CURATED_COLLECTIONS.value),
    "embeddings": (QueueName.PRODUCT_EMBEDDING.value, QueueName.TASTE_PROFILE_EMBEDDING.value),
}


def split_limit_servers(kind: RateLimitKind) -> list[str]:
    """The password-free URLs of the Redis servers a ``kind`` limit is counted on, when its queues
    sit on more than one (each then counts the whole limit); empty when they share one."""
    from jobqueue.settings import get_settings, redact_url

    settings = get_settings()
    urls = sorted({redact_url(settings.queue_redis_url(queue)) for queue in LIMIT_USERS[kind]})
    return urls if len(urls) > 1 else []


def _warn_if_split(kind: RateLimitKind, name: str) -> None:
    servers = split_limit_servers(kind)
    if servers:
        logger.warning(
            "rate limit %r is counted on each of %s (the queues %s use it and sit on different Redis "
            "servers): together they may reach it once per server; give each server its share",
            name,
            ", ".join(servers),
            ", ".join(LIMIT_USERS[kind]),
        )


def rate_limiter_for(
    redis: Redis, provider: str, kind: RateLimitKind, settings: RateLimitSettings | None = None
) -> RateLimiter | None:
    """The shared limiter ``jq:ratelimit:<provider>:<kind>``, or None when its limit is 0."""
    settings = settings or RateLimitSettings()
    per_minute = settings.llm_rate_limit_per_minute if kind == "chat" else settings.embedding_rate_limit_per_minute
    if per_minute == 0:
        return None
    _warn_if_split(kind, f"{provider}:{kind}")
    return RateLimiter(redis, f"{provider}:{kind}", per_minute, settings.llm_rate_limit_period)


def token_limiter_for(
    redis: Redis, provider: str, kind: Literal["embeddings"], settings: RateLimitSettings | None = None
) -> TokenRateLimiter | None:
    """The shared token limit ``jq:ratelimit:<provider>:<kind>:tokens``, or None when it is 0."""
    settings = settings or RateLimitSettings()
    per_minute = settings.embedding_token_limit_per_minute
    if per_minute == 0:
        return None
    _warn_if_split(kind, f"{provider}:{kind}:tokens")
    return TokenRateLimiter(redis, f"{provider}:{kind}:tokens", per_minute, settings.llm_rate_limit_period)
