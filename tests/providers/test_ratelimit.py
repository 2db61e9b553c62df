"""The Redis-shared rate limit, in one process and across processes."""

from __future__ import annotations

import asyncio
import math
import os
import sys
import textwrap
from typing import Any

import pytest
from redis.asyncio import Redis

from jobqueue.errors import RetryableJobError
from tests.support.waiting import ROOT
from workers.providers.ratelimit import RateLimiter, RateLimitSettings, rate_limiter_for


def micros(seconds: float) -> int:
    return round(seconds * 1_000_000)


def max_in_any_window(times_us: list[int], period_us: int) -> int:
    """The most acquisitions that fall in one half-open window [t, t + period)."""
    ordered = sorted(times_us)
    return max(sum(1 for t in ordered if start <= t < start + period_us) for start in ordered)


def count_script_calls(limiter: RateLimiter) -> list[int]:
    calls = [0]
    script = limiter._script

    async def counting(*args: Any, **kwargs: Any) -> Any:
        calls[0] += 1
        return await script(*args, **kwargs)

    limiter._script = counting  # type: ignore[assignment]
    return calls


async def test_limit_is_granted_at_once_and_the_next_call_waits_for_the_window(redis_client: Redis) -> None:
    limiter = RateLimiter(redis_client, "test:burst", limit=5, period=1.0)
    calls = count_script_calls(limiter)

    burst = await asyncio.gather(*(limiter.acquire() for _ in range(5)))
    assert calls[0] == 5  # each of the five got its slot on the first try

    sixth = await limiter.acquire(timeout=10)

    assert micros(sixth) - micros(min(burst)) >= 1_000_000
    assert max_in_any_window([micros(t) for t in [*burst, sixth]], 1_000_000) == 5
    # It slept until the oldest entry left the window rather than polling.
    assert calls[0] <= 5 + 3


async def test_a_slot_further_away_than_the_timeout_raises_retryable_at_once(redis_client: Redis) -> None:
    limiter = RateLimiter(redis_client, "test:timeout", limit=1, period=30.0)
    await limiter.acquire()

    with pytest.raises(RetryableJobError, match="test:timeout") as info:
        await limiter.acquire(timeout=0.2)

    assert info.value.retry_after is not None
    assert 29.0 < info.value.retry_after <= 30.0


async def test_window_key_lives_under_jq_ratelimit_and_expires(redis_client: Redis) -> None:
    limiter = RateLimiter(redis_client, "test:expiry", limit=3, period=2.0)
    await limiter.acquire()

    ttl_ms = await redis_client.pttl("jq:ratelimit:test:expiry")
    assert 0 < ttl_ms <= 2000 + 1000
    assert await redis_client.zcard("jq:ratelimit:test:expiry") == 1


async def test_limiter_works_after_redis_forgets_the_script(redis_client: Redis) -> None:
    limiter = RateLimiter(redis_client, "test:noscript", limit=2, period=5.0)
    await limiter.acquire()
    # A SHA Redis has never seen gets the same NOSCRIPT reply as a flushed cache, without flushing
    # the scripts of everything else using this server.
    limiter._script.sha = "0" * 40

    await limiter.acquire()

    assert await redis_client.zcard("jq:ratelimit:test:noscript") == 2


def test_limit_must_be_positive(redis_client: Redis) -> None:
    with pytest.raises(ValueError, match="at least 1"):
        RateLimiter(redis_client, "test:zero", limit=0)


async def test_rate_limiter_for_uses_per_provider_keys_and_zero_means_unlimited(
    redis_client: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LLM_RATE_LIMIT_PER_MINUTE", "120")
    monkeypatch.delenv("EMBEDDING_RATE_LIMIT_PER_MINUTE", raising=False)
    settings = RateLimitSettings()

    chat = rate_limiter_for(redis_client, "openai", "chat", settings)

    assert chat is not None
    assert (chat.key, chat.limit, chat.period) == ("jq:ratelimit:openai:chat", 120, 60.0)
    assert rate_limiter_for(redis_client, "openai", "embeddings", settings) is None


# Each child waits for the "go" signal so both contend for the same window, then records the Redis
# time of every acquisition.
CHILD = textwrap.dedent(
    """
    import asyncio, sys
    from redis.asyncio import Redis
    from workers.providers.ratelimit import RateLimiter

    async def main(url, name, limit, period, count, out, ready, go):
        redis = Redis.from_url(url)
        try:
            limiter = RateLimiter(redis, name, int(limit), float(period))
            await redis.rpush(ready, 1)
            if await redis.blpop([go], timeout=20) is None:
                sys.exit("no go signal")
            for _ in range(int(count)):
                acquired = await limiter.acquire(timeout=20)
                await redis.rpush(out, round(acquired * 1_000_000))
        finally:
            await redis.aclose()

    asyncio.run(main(*sys.argv[1:]))
    """
)


async def test_two_processes_together_stay_within_the_limit(redis_url: str, redis_client: Redis) -> None:
    limit, period, per_process = 4, 0.5, 6
    ready, go = "jq:test:ratelimit:ready", "jq:test:ratelimit:go"
    outs = [f"jq:test:ratelimit:out:{i}" for i in range(2)]
    env = os.environ | {"PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            CHILD,
            redis_url,
            "test:processes",
            str(limit),
            str(period),
            str(per_process),
            out,
            ready,
            go,
            cwd=ROOT,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        for out in outs
    ]
    try:
        for _ in procs:
            assert await redis_client.blpop([ready], timeout=20) is not None, "a child never got ready"
        await redis_client.rpush(go, *(1 for _ in procs))
        results = await asyncio.wait_for(asyncio.gather(*(p.communicate() for p in procs)), timeout=25)
    finally:
        for proc in procs:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    for proc, (_, stderr) in zip(procs, results, strict=True):
        assert proc.returncode == 0, stderr.decode()

    per_child = [[int(t) for t in await redis_client.lrange(out, 0, -1)] for out in outs]
    assert [len(times) for times in per_child] == [per_process, per_process]
    times = [t for child in per_child for t in child]
    period_us = micros(period)
    assert max_in_any_window(times, period_us) <= limit
    # Twelve calls at four per window cannot fit in less than two full windows.
    assert max(times) - min(times) >= (math.ceil(len(times) / limit) - 1) * period_us
