"""The Redis-shared tokens-per-window limit (providers cap tokens as well as requests)."""

from __future__ import annotations

import asyncio

import pytest
from redis.asyncio import Redis

from jobqueue.errors import PermanentJobError, RetryableJobError
from workers.providers.llm import OpenAIProvider, estimate_tokens
from workers.providers.ratelimit import RateLimitSettings, TokenRateLimiter, token_limiter_for
from workers.testing.fake_openai import FakeOpenAI


async def test_tokens_fit_until_the_window_is_full_then_wait_for_the_oldest(redis_client: Redis) -> None:
    limiter = TokenRateLimiter(redis_client, "test:tokens", limit=100, period=1.0)
    first = await limiter.acquire(cost=60)
    second = await limiter.acquire(cost=40)  # exactly full
    third = await limiter.acquire(timeout=10, cost=30)  # waits until the first 60 leave
    assert second - first < 1.0
    assert third - first >= 1.0
    assert await redis_client.exists(limiter.key, limiter.sum_key) == 2


async def test_no_room_within_the_timeout_raises_retryable_with_the_wait(redis_client: Redis) -> None:
    limiter = TokenRateLimiter(redis_client, "test:tokens-timeout", limit=50, period=30.0)
    await limiter.acquire(cost=50)
    with pytest.raises(RetryableJobError) as info:
        await limiter.acquire(timeout=0.1, cost=1)
    assert 29 < info.value.retry_after <= 30


async def test_a_cost_over_the_whole_limit_is_permanent(redis_client: Redis) -> None:
    limiter = TokenRateLimiter(redis_client, "test:tokens-big", limit=10, period=1.0)
    with pytest.raises(PermanentJobError, match="can never fit"):
        await limiter.acquire(cost=11)


async def test_the_window_sum_is_rebuilt_when_its_key_is_gone(redis_client: Redis) -> None:
    limiter = TokenRateLimiter(redis_client, "test:tokens-rebuild", limit=100, period=30.0)
    await limiter.acquire(cost=70)
    await redis_client.delete(limiter.sum_key)
    with pytest.raises(RetryableJobError):
        await limiter.acquire(timeout=0, cost=31)
    await limiter.acquire(timeout=0, cost=30)


async def test_processes_share_the_token_window(redis_client: Redis, redis_url: str) -> None:
    # Two clients (as two worker processes would have) draw on one window.
    other = Redis.from_url(redis_url)
    try:
        a = TokenRateLimiter(redis_client, "test:tokens-shared", limit=100, period=30.0)
        b = TokenRateLimiter(other, "test:tokens-shared", limit=100, period=30.0)
        await asyncio.gather(a.acquire(cost=50), b.acquire(cost=50))
        with pytest.raises(RetryableJobError):
            await b.acquire(timeout=0, cost=1)
    finally:
        await other.aclose()


def test_token_limit_is_off_unless_set(redis_client: Redis) -> None:
    assert token_limiter_for(redis_client, "openai", "embeddings", RateLimitSettings()) is None
    limiter = token_limiter_for(
        redis_client, "openai", "embeddings", RateLimitSettings(embedding_token_limit_per_minute=1000)
    )
    assert limiter is not None and limiter.key == "jq:ratelimit:openai:embeddings:tokens"


async def test_an_embeddings_request_takes_its_estimated_tokens(redis_client: Redis) -> None:
    limiter = TokenRateLimiter(redis_client, "test:tokens-provider", limit=1000, period=30.0)
    texts = ["a" * 40, "b" * 41]
    with FakeOpenAI(dims=4) as fake:
        provider = OpenAIProvider(
            api_key="k",
            base_url=fake.base_url,
            model="m",
            embedding_model="e",
            dims=4,
            embedding_token_limiter=limiter,
        )
        try:
            await provider.embed(texts)
        finally:
            await provider.aclose()
    assert sum(estimate_tokens(t) for t in texts) == 10 + 11
    assert int(await redis_client.get(limiter.sum_key)) == 21
