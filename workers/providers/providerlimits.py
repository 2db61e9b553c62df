"""Limits learnt from the provider's rate-limit headers, shared by every worker process through Redis.

Every OpenAI response says how much of its budget is left and when it is whole again::

    x-ratelimit-limit-requests: 3000        x-ratelimit-limit-tokens: 1000000
    x-ratelimit-remaining-requests: 2999    x-ratelimit-remaining-tokens: 999984
    x-ratelimit-reset-requests: 20ms        x-ratelimit-reset-tokens: 1ms

The budget refills continuously (a bucket of ``limit`` that is whole again after ``reset``), so one
response gives its refill rate, ``(limit - remaining) / reset``. ``ProviderLimits`` keeps one such
bucket per budget (requests, tokens) in a Redis hash, ``jq:ratelimit:<provider>:<kind>:learned``:

- ``acquire(tokens)`` takes one request and ``tokens`` of the buckets when both hold them plus a
  reserve (``RESERVE_FRACTION`` of the limit), else says how long until they will; the reserve
  absorbs the jitter between the moment a slot is granted and the moment the request reaches the
  provider, and costs no throughput (a bucket's steady rate is its refill rate, whatever its level);
- ``observe(grant, headers)`` lowers a bucket to what the provider reported, less what every
  process was granted since this request's own grant, plus the refill since: the provider's count
  is authoritative, the grants it has not seen yet are still counted;
- a 429's ``retry-after`` (or ``retry-after-ms``) blocks every process until it has passed.

Before the first answer nothing is known: one request (the probe) goes at a time until one has
answered, so a cold start of many workers never bursts past a limit not learnt yet. A provider that
sends no such headers is then not paced here at all. The hand-set ``*_RATE_LIMIT_PER_MINUTE``
limits (``workers.providers.ratelimit``) stay in force as ceilings throughout.
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from jobqueue.errors import RetryableJobError
from workers.providers._http import parse_retry_after
from workers.providers.ratelimit import RATE_LIMIT_KEY_PREFIX

logger = logging.getLogger("workers.providerlimits")

# Before any answer has been seen, one request goes at a time; a probe that never answers (a timeout,
# a connection error) frees the way after PROBE_GRACE_US; the others look again every PROBE_POLL_US.
PROBE_GRACE_US: Final = 5_000_000
PROBE_POLL_US: Final = 20_000
# The ratio of counted to estimated tokens: a moving average (this weight for the newest answer),
# kept within these bounds so one odd answer cannot stall or flood the token budget.
RATIO_WEIGHT: Final = 0.2
MIN_TOKEN_RATIO: Final = 0.25
MAX_TOKEN_RATIO: Final = 4.0
# Kept back from each learnt bucket: 10% of the limit (at least one unit when the limit is over 1).
RESERVE_FRACTION: Final = 0.1
# The learnt state is forgotten after this long without a response (limits can change).
LEARNT_TTL_MS: Final = 3_600_000

_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(h|ms|us|µs|ns|m|s)")
_UNIT_SECONDS: Final = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}


def parse_duration(text: str | None) -> float | None:
    """Seconds in a reset header: Go-style durations (``6m0s``, ``1s``, ``120ms``, ``1.5s``,
    ``2h0m0s``) or a bare number of seconds; None when absent or unreadable."""
    if text is None:
        return None
    value = text.strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return seconds if seconds >= 0 else None
    total, position = 0.0, 0
    for match in _DURATION_PART.finditer(value):
        if match.start() != position:
            return None
        total += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        position = match.end()
    return total if position == len(value) else None


def _int(headers: Mapping[str, str], name: str) -> int | None:
    try:
        return int(headers[name])
    except (KeyError, ValueError):
        return None


@dataclass(frozen=True, slots=True)
class Budget:
    """One budget as a response reported it: its limit, what remains, seconds until whole."""

    limit: int
    remaining: int
    reset: float | None


@dataclass(frozen=True, slots=True)
class RateLimitHeaders:
    """The rate-limit headers of one response."""

    requests: Budget | None = None
    tokens: Budget | None = None
    retry_after: float | None = None

    @classmethod
    def parse(cls, headers: Mapping[str, str] | None) -> RateLimitHeaders:
        lowered = {k.lower(): v for k, v in (headers or {}).items()}
        budgets: dict[str, Budget | None] = {}
        for kind in ("requests", "tokens"):
            limit = _int(lowered, f"x-ratelimit-limit-{kind}")
            remaining = _int(lowered, f"x-ratelimit-remaining-{kind}")
            reset = parse_duration(lowered.get(f"x-ratelimit-reset-{kind}"))
            budgets[kind] = (
                Budget(limit, max(0, min(remaining, limit)), reset)
                if limit is not None and limit > 0 and remaining is not None
                else None
            )
        return cls(budgets["requests"], budgets["tokens"], parse_retry_after(lowered))


@dataclass(frozen=True, slots=True)
class Grant:
    """What ``acquire`` took: the buckets' grant counters after it, Redis' time (µs), and the
    estimated tokens it was asked for."""

    requests_mark: int
    tokens_mark: int
    at_us: int
    estimated_tokens: int = 1


# Fields of the hash per bucket b (r: requests, t: tokens): b:cap, b:rate (per second), b:level and
# b:at (µs of that level), b:spent (units granted so far, learnt or not); and blocked (µs).
# Times are integer microseconds from Redis' TIME, written with %d (Lua's tostring keeps 14 digits).
_LUA_COMMON = """
local key = KEYS[1]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local function num(field) return tonumber(redis.call('HGET', key, field) or '') end
local function level_now(b)
  local cap, rate, level, at = num(b .. ':cap'), num(b .. ':rate'), num(b .. ':level'), num(b .. ':at')
  if cap == nil or rate == nil or rate <= 0 or level == nil or at == nil then return nil, cap, rate end
  return math.min(cap, level + rate * (now - at) / 1000000), cap, rate
end
"""

# ARGV: tokens, reserve fraction, ttl ms, probe grace µs, probe poll µs. Returns {granted 0/1,
# wait µs, requests mark, tokens mark, now µs}. Until some answer has been seen, one request (the
# probe) goes at a time: a cold start never bursts past a limit it has not learnt yet.
_ACQUIRE_LUA: Final = (
    _LUA_COMMON
    + """
local costs = {r = 1, t = tonumber(ARGV[1])}
local fraction = tonumber(ARGV[2])
local blocked = num('blocked') or 0
if now < blocked then return {0, blocked - now, 0, 0, now} end
if num('seen') == nil then
  local probe = num('probe')
  if probe ~= nil and now < probe then return {0, math.min(probe - now, tonumber(ARGV[5])), 0, 0, now} end
  redis.call('HSET', key, 'probe', string.format('%d', now + tonumber(ARGV[4])))
end
local wait, levels = 0, {}
for b, cost in pairs(costs) do
  local level, cap, rate = level_now(b)
  if level ~= nil and cost <= cap then
    local reserve = math.min(math.floor(cap * fraction), cap - cost)
    if cap > 1 and reserve < 1 and cap - cost >= 1 then reserve = 1 end
    local need = cost + reserve
    if level < need then wait = math.max(wait, math.ceil((need - level) / rate * 1000000)) end
    levels[b] = level
  end
end
if wait > 0 then return {0, wait, 0, 0, now} end
for b, cost in pairs(costs) do
  if levels[b] ~= nil then
    local level = string.format('%.6f', levels[b] - cost)
    redis.call('HSET', key, b .. ':level', level, b .. ':at', string.format('%d', now))
  end
end
local r_mark = redis.call('HINCRBY', key, 'r:spent', costs.r)
local t_mark = redis.call('HINCRBY', key, 't:spent', costs.t)
redis.call('PEXPIRE', key, ARGV[3])
return {1, 0, r_mark, t_mark, now}
"""
)

# ARGV: requests mark, tokens mark, grant µs, ttl ms, retry-after µs ('' if none), then for r and
# t: limit, remaining, reset µs ('' if a value is absent). Returns 1.
_OBSERVE_LUA: Final = (
    _LUA_COMMON
    + """
local marks = {r = tonumber(ARGV[1]), t = tonumber(ARGV[2])}
local granted_at = tonumber(ARGV[3])
local retry_after = tonumber(ARGV[5])
local args = {r = {6, 7, 8}, t = {9, 10, 11}}
redis.call('HSET', key, 'seen', '1')
redis.call('HDEL', key, 'probe')
for b, at in pairs(args) do
  local limit, remaining, reset = tonumber(ARGV[at[1]]), tonumber(ARGV[at[2]]), tonumber(ARGV[at[3]])
  if limit ~= nil and remaining ~= nil then
    local current, _, rate = level_now(b)
    if remaining < limit and reset ~= nil and reset > 0 then rate = (limit - remaining) * 1000000 / reset end
    if rate ~= nil and rate > 0 then
      local since = (num(b .. ':spent') or 0) - marks[b]
      local estimate = remaining - since + rate * math.max(0, now - granted_at) / 1000000
      local level = math.min(limit, estimate)
      if current ~= nil then level = math.min(current, level) end
      redis.call('HSET', key, b .. ':cap', limit, b .. ':rate', string.format('%.9g', rate),
        b .. ':level', string.format('%.6f', level), b .. ':at', string.format('%d', now))
    else
      redis.call('HSET', key, b .. ':cap', limit)
    end
  end
end
if retry_after ~= nil then
  local until_us = now + retry_after
  if until_us > (num('blocked') or 0) then redis.call('HSET', key, 'blocked', string.format('%d', until_us)) end
  for _, b in ipairs({'r', 't'}) do
    local level = level_now(b)
    if level ~= nil and level > 0 then
      redis.call('HSET', key, b .. ':level', '0', b .. ':at', string.format('%d', now))
    end
  end
end
redis.call('PEXPIRE', key, ARGV[4])
return 1
"""
)


def _us(seconds: float | None) -> str:
    return "" if seconds is None else str(round(seconds * 1_000_000))


class ProviderLimits:
    """The provider's own limits for one provider and kind (chat, embeddings), learnt from its
    headers and shared through ``jq:ratelimit:<name>:learned``."""

    def __init__(self, redis: Redis, name: str, *, reserve_fraction: float = RESERVE_FRACTION) -> None:
        self.name = name
        self.key = RATE_LIMIT_KEY_PREFIX + name + ":learned"
        self.reserve_fraction = reserve_fraction
        self._acquire = redis.register_script(_ACQUIRE_LUA)
        self._observe = redis.register_script(_OBSERVE_LUA)
        # This process has written that an answer was seen (the probe is over).
        self._seen = False
        # Tokens the provider counts per estimated token (characters / 4 is a rule of thumb): each
        # acquisition takes its estimate times this, learnt from the answers' usage.
        self.token_ratio = 1.0
        self._ratio_seen = False

    async def acquire(self, timeout: float | None = None, *, tokens: int = 1) -> Grant:
        """Wait until the learnt budgets hold one request and ``tokens`` (plus the reserve), take
        them, and return the grant to hand to ``observe``.

        Raises ``RetryableJobError`` (with ``retry_after``) at once when that is further away than
        ``timeout``, or when Redis cannot be reached.
        """
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while True:
            cost = max(1, math.ceil(tokens * self.token_ratio))
            args = [cost, self.reserve_fraction, LEARNT_TTL_MS, PROBE_GRACE_US, PROBE_POLL_US]
            reply = await self._call(self._acquire, args)
            granted, wait_us, r_mark, t_mark, now_us = (int(v) for v in reply)
            if granted:
                return Grant(r_mark, t_mark, now_us, tokens)
            wait = wait_us / 1_000_000
            if deadline is not None and loop.time() + wait > deadline:
                raise RetryableJobError(
                    f"the provider's limits ({self.name}) leave no room for {wait:.3f}s", retry_after=wait
                )
            await asyncio.sleep(wait)

    async def observe(
        self, grant: Grant, headers: Mapping[str, str] | None, *, used_tokens: int | None = None
    ) -> RateLimitHeaders:
        """Learn from the headers of the response to the request of ``grant`` (a 429's too), and
        from ``used_tokens``, the tokens the provider counted, how far off the estimate was."""
        if used_tokens is not None and used_tokens > 0 and grant.estimated_tokens > 0:
            seen = used_tokens / grant.estimated_tokens
            if self._ratio_seen:
                seen = self.token_ratio * (1 - RATIO_WEIGHT) + seen * RATIO_WEIGHT
            self.token_ratio = min(MAX_TOKEN_RATIO, max(MIN_TOKEN_RATIO, seen))
            self._ratio_seen = True
        parsed = RateLimitHeaders.parse(headers)
        args: list[Any] = [grant.requests_mark, grant.tokens_mark, grant.at_us, LEARNT_TTL_MS, _us(parsed.retry_after)]
        for budget in (parsed.requests, parsed.tokens):
            args += ["", "", ""] if budget is None else [budget.limit, budget.remaining, _us(budget.reset)]
        if parsed.requests is None and parsed.tokens is None and parsed.retry_after is None and self._seen:
            return parsed  # a provider that sends no limits: nothing to learn, nothing to pace by
        try:
            await self._call(self._observe, args)
        except RetryableJobError as exc:  # the call itself succeeded: losing one lesson is no reason to fail it
            logger.warning("%s", exc)
        else:
            self._seen = True
        return parsed

    async def _call(self, script: Any, args: list[Any]) -> Any:
        try:
            return await script(keys=[self.key], args=args)
        except (RedisConnectionError, RedisTimeoutError) as exc:
            raise RetryableJobError(f"provider limits {self.name!r} could not reach Redis: {exc}") from exc
