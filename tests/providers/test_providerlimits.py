"""Limits learnt from the provider's headers: parsing, the shared buckets in Redis, and two clients
paced by them against the loopback server with a binding request limit and no 429."""

from __future__ import annotations

import asyncio

import pytest
import redis.asyncio as aioredis

from jobqueue.errors import RetryableJobError
from workers.providers.llm import OpenAIProvider
from workers.providers.providerlimits import ProviderLimits, RateLimitHeaders, parse_duration
from workers.testing.fake_openai import FakeOpenAI, go_duration

DIMS = 8


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("6m0s", 360.0),
        ("1s", 1.0),
        ("120ms", 0.12),
        ("1.5s", 1.5),
        ("2h3m4.5s", 7384.5),
        ("17.25ms", 0.01725),
        ("250us", 0.00025),
        ("0s", 0.0),
        ("3", 3.0),
        ("0.5", 0.5),
    ],
)
def test_reset_durations_are_read_in_go_format_or_as_seconds(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", [None, "", "soon", "5x", "1s2", "-1", "s", "1m-2s"])
def test_unreadable_reset_durations_are_none(text: str | None) -> None:
    assert parse_duration(text) is None


@pytest.mark.parametrize("seconds", [0.0, 0.0005, 0.02, 0.12, 1.0, 1.5, 59.999, 360.0, 3725.25])
def test_the_fake_servers_durations_read_back_as_what_it_meant(seconds: float) -> None:
    assert parse_duration(go_duration(seconds)) == pytest.approx(seconds, abs=1e-6)


def test_headers_parse_into_both_budgets_and_retry_after() -> None:
    parsed = RateLimitHeaders.parse(
        {
            "X-RateLimit-Limit-Requests": "3000",
            "x-ratelimit-remaining-requests": "2999",
            "x-ratelimit-reset-requests": "20ms",
            "x-ratelimit-limit-tokens": "1000000",
            "x-ratelimit-remaining-tokens": "999984",
            "x-ratelimit-reset-tokens": "6m0s",
            "retry-after-ms": "1500",
        }
    )
    assert parsed.requests is not None and parsed.tokens is not None
    assert (parsed.requests.limit, parsed.requests.remaining, parsed.requests.reset) == (3000, 2999, 0.02)
    assert (parsed.tokens.limit, parsed.tokens.remaining, parsed.tokens.reset) == (1_000_000, 999_984, 360.0)
    assert parsed.retry_after == 1.5


def test_missing_or_broken_headers_teach_nothing() -> None:
    parsed = RateLimitHeaders.parse({"x-ratelimit-limit-requests": "many", "x-ratelimit-remaining-tokens": "5"})
    assert parsed == RateLimitHeaders()


def headers(limit: int, remaining: int, reset: str) -> dict[str, str]:
    return {
        "x-ratelimit-limit-requests": str(limit),
        "x-ratelimit-remaining-requests": str(remaining),
        "x-ratelimit-reset-requests": reset,
    }


async def test_before_the_first_answer_one_request_goes_at_a_time(redis_client: aioredis.Redis) -> None:
    limits = ProviderLimits(redis_client, "test:cold")
    probe = await limits.acquire(timeout=0)
    with pytest.raises(RetryableJobError):
        await limits.acquire(timeout=0)  # the probe has not answered yet
    await limits.observe(probe, headers(100, 99, "600ms"))
    assert (await limits.acquire(timeout=0)).requests_mark == 2


async def test_a_provider_that_sends_no_limits_is_not_paced(redis_client: aioredis.Redis) -> None:
    limits = ProviderLimits(redis_client, "test:silent")
    await limits.observe(await limits.acquire(timeout=0), {"content-type": "application/json"})
    grants = [await limits.acquire(timeout=0) for _ in range(20)]
    assert [g.requests_mark for g in grants] == list(range(2, 22))


async def test_a_cold_start_with_no_hand_set_limit_meets_no_429(redis_client: aioredis.Redis) -> None:
    """30 requests at once against 5 a second, nothing learnt yet and no ceiling: the probe
    teaches the limit before the others go."""
    with FakeOpenAI(dims=DIMS, request_limit=5, rate_window=1.0, latency=0.02) as fake:
        provider = OpenAIProvider(
            api_key="sk-test",
            base_url=fake.base_url,
            model="m",
            embedding_model="e",
            dims=DIMS,
            embedding_limits=ProviderLimits(redis_client, "openai:embeddings"),
            rate_limit_wait=30,
        )
        try:
            await asyncio.gather(*(provider.embed([f"t{i}"]) for i in range(30)))
        finally:
            await provider.aclose()
        stats = fake.stats()
    assert (stats["rate_limited"], stats["embedding_requests"]) == (0, 30)


async def test_an_empty_budget_makes_the_next_call_wait_for_its_refill(redis_client: aioredis.Redis) -> None:
    limits = ProviderLimits(redis_client, "test:empty")
    grant = await limits.acquire()
    # 10 a second: 10 left of 10 would be whole; 0 left is whole again in 1 s.
    await limits.observe(grant, headers(10, 0, "1s"))
    with pytest.raises(RetryableJobError, match="no room") as info:
        await limits.acquire(timeout=0.05)
    # One request and the reserve (1 of 10) must refill: about 0.2 s.
    assert info.value.retry_after == pytest.approx(0.2, abs=0.03)
    started = asyncio.get_running_loop().time()
    await limits.acquire(timeout=1)
    assert asyncio.get_running_loop().time() - started >= 0.15


async def test_grants_made_after_a_request_count_against_what_its_response_reported(
    redis_client: aioredis.Redis,
) -> None:
    limits = ProviderLimits(redis_client, "test:inflight")
    await limits.observe(await limits.acquire(), headers(100, 99, "600ms"))  # the probe: 100 a minute
    first = await limits.acquire()
    for _ in range(4):  # granted after `first`, not yet seen by the provider when it answered
        await limits.acquire()
    # 100 a minute: the answer to `first` says 6 left; the 4 later grants leave 2, under the reserve.
    await limits.observe(first, headers(100, 6, f"{94 * 0.6:.1f}s"))
    with pytest.raises(RetryableJobError):
        await limits.acquire(timeout=0)
    level = float(await redis_client.hget(limits.key, "r:level"))
    assert level == pytest.approx(2, abs=0.1)


async def test_a_429s_retry_after_blocks_every_client(redis_client: aioredis.Redis, redis_url: str) -> None:
    other_client = aioredis.Redis.from_url(redis_url)
    try:
        mine, theirs = ProviderLimits(redis_client, "test:429"), ProviderLimits(other_client, "test:429")
        grant = await mine.acquire()
        await mine.observe(grant, {"retry-after": "2"})
        with pytest.raises(RetryableJobError) as info:
            await theirs.acquire(timeout=0.5)
        assert 1.5 < info.value.retry_after <= 2.0
    finally:
        await other_client.aclose()


async def test_two_clients_sharing_the_learnt_limits_meet_no_429_under_a_binding_limit(
    redis_url: str,
) -> None:
    """Two providers, each with its own Redis client (as two worker processes have), send 160
    requests as fast as they may against 40 a second: the headers pace them and none is refused."""
    limit, window, per_client = 40, 1.0, 80
    with FakeOpenAI(dims=DIMS, request_limit=limit, rate_window=window, latency=0.02) as fake:
        clients = [aioredis.Redis.from_url(redis_url) for _ in range(2)]
        providers = [
            OpenAIProvider(
                api_key="sk-test",
                base_url=fake.base_url,
                model="m",
                embedding_model="e",
                dims=DIMS,
                embedding_limits=ProviderLimits(client, "openai:embeddings"),
                rate_limit_wait=30,
            )
            for client in clients
        ]

        async def send(provider: OpenAIProvider, n: int) -> None:
            async def one(i: int) -> None:
                await provider.embed([f"text {id(provider)} {i}"])

            await asyncio.gather(*(one(i) for i in range(n)))

        try:
            await asyncio.gather(*(send(p, per_client) for p in providers))
            learnt = await clients[0].hgetall("jq:ratelimit:openai:embeddings:learned")
        finally:
            for provider in providers:
                await provider.aclose()
            for client in clients:
                await client.aclose()
        stats = fake.stats()
    assert stats["rate_limited"] == 0
    assert stats["embedding_requests"] == 2 * per_client
    # What both learnt, shared in Redis: the provider's limit and its refill rate (40 a second).
    # (The throughput this gives is measured by `python -m bench embeddings`, not asserted here.)
    assert int(learnt[b"r:cap"]) == limit
    assert float(learnt[b"r:rate"]) == pytest.approx(limit / window, rel=0.1)


async def test_hand_set_limits_stay_ceilings_below_the_providers(redis_client: aioredis.Redis) -> None:
    from workers.providers.ratelimit import RateLimiter

    with FakeOpenAI(dims=DIMS, request_limit=1000, rate_window=1.0) as fake:
        provider = OpenAIProvider(
            api_key="sk-test",
            base_url=fake.base_url,
            model="m",
            embedding_model="e",
            dims=DIMS,
            embedding_limiter=RateLimiter(redis_client, "test:ceiling", limit=5, period=1.0),
            embedding_limits=ProviderLimits(redis_client, "test:generous"),
            rate_limit_wait=10,
        )
        try:
            await asyncio.gather(*(provider.embed([f"t{i}"]) for i in range(10)))
        finally:
            await provider.aclose()
        arrivals = sorted(r.at for r in fake.requests_to("/v1/embeddings"))
    # The provider allows 1,000 a second; the ceiling of 5 a second still holds.
    assert arrivals[5] - arrivals[0] >= 0.9


async def test_a_binding_token_limit_is_learnt_from_its_headers_too(redis_client: aioredis.Redis) -> None:
    """200 tokens a second, each request 10 words (10 tokens to the server, 8 by the client's
    estimate): the token budget binds (20 requests a second), the request budget (1,000) does not;
    none is refused."""
    with FakeOpenAI(dims=DIMS, request_limit=1000, token_limit=200, rate_window=1.0, latency=0.02) as fake:
        provider = OpenAIProvider(
            api_key="sk-test",
            base_url=fake.base_url,
            model="m",
            embedding_model="e",
            dims=DIMS,
            embedding_limits=ProviderLimits(redis_client, "openai:embeddings"),
            rate_limit_wait=30,
        )
        try:
            texts = [" ".join([f"p{i}"] + [f"w{j}" for j in range(9)]) for i in range(60)]
            await asyncio.gather(*(provider.embed([text]) for text in texts))
            learnt = await redis_client.hgetall("jq:ratelimit:openai:embeddings:learned")
        finally:
            await provider.aclose()
        stats = fake.stats()
    assert stats["rate_limited"] == 0 and stats["embedding_requests"] == 60
    assert (int(learnt[b"t:cap"]), int(learnt[b"r:cap"])) == (200, 1000)
    assert float(learnt[b"t:rate"]) == pytest.approx(200, rel=0.1)


async def test_token_costs_follow_what_the_provider_counted_against_the_estimate(
    redis_client: aioredis.Redis,
) -> None:
    limits = ProviderLimits(redis_client, "test:ratio")
    probe = await limits.acquire(tokens=10)
    await limits.observe(probe, headers(100, 99, "600ms"), used_tokens=20)  # twice the estimate
    assert limits.token_ratio == 2.0
    grant = await limits.acquire(tokens=10)
    assert grant.tokens_mark - probe.tokens_mark == 20


async def test_two_worker_processes_paced_by_the_headers_meet_no_429(store, fake_openai, core_env):
    """Two real `arq` worker processes, no hand-set limit, one request per job, 16 jobs against
    4 requests a second: the probe and the shared learnt limits keep every request within it."""
    import jobqueue
    from jobqueue.backend.connection import get_redis
    from tests.support.waiting import WorkerProcess, wait_for

    fake_openai.request_limit, fake_openai.rate_window = 4, 1.0
    ids = [f"p{i}" for i in range(16)]
    for pid in ids:
        await store.upsert_product(pid, name=f"Product {pid}", price=1000)
    queue = jobqueue.product_embedding_queue
    options = {
        "JOBQUEUE_PRODUCT_EMBEDDING_BATCH_SIZE": "1",
        "JOBQUEUE_PRODUCT_EMBEDDING_CONCURRENCY": "8",
        "JOBQUEUE_PRODUCT_EMBEDDING_WORKER_LEASE": "15",
    }

    async def workers_up() -> bool:
        return await get_redis().zcard(queue.keys.workers) >= 2

    async def all_done() -> bool:
        return (await queue.get_job_counts())["completed"] >= len(ids)

    # Each process has its own key, so the server can tell who called.
    with (
        WorkerProcess("workers.EmbeddingSettings", LLM_API_KEY="sk-a", **options) as a,
        WorkerProcess("workers.EmbeddingSettings", LLM_API_KEY="sk-b", **options),
    ):
        await wait_for(workers_up, timeout=30, what="both workers to start")
        await jobqueue.enqueue_product_embeddings(ids)
        await a.wait_for(all_done, timeout=60, what="16 embeddings")
    stats = fake_openai.stats()
    assert (stats["rate_limited"], stats["embedding_requests"]) == (0, len(ids))
    callers = {r.headers["authorization"] for r in fake_openai.requests_to("/v1/embeddings")}
    assert callers == {"Bearer sk-a", "Bearer sk-b"}
