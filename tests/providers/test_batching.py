"""Batched embeddings: the embedding jobs of a worker process share requests, each keeping its own
record, attempts and retries. Real Redis, real arq workers, the loopback OpenAI server."""

from __future__ import annotations

import asyncio
import math

import pytest

import jobqueue
from jobqueue import JobFailedError
from jobqueue.backend.connection import get_redis
from tests.support.fixtures import DIMS
from tests.support.waiting import WorkerProcess, wait_for
from tests.support.workers import RunningWorker, run_burst
from workers.jobs.products import canonical_text
from workers.settings import embedding_settings, taste_profile_settings
from workers.testing.fake_openai import FakeOpenAI

EMBEDDINGS = "/v1/embeddings"
queue = jobqueue.product_embedding_queue


async def _seed(store, n: int, prefix: str = "p", **fields) -> dict[str, str]:
    """``n`` products; returns each one's canonical text."""
    texts = {}
    for i in range(n):
        values = {"name": f"Product {prefix}{i}", "price": 1000 + i, "description": f"Item {i}."} | fields
        product = await store.upsert_product(f"{prefix}{i}", **values)
        texts[product.id] = canonical_text(product)
    return texts


async def _finished(n: int) -> bool:
    counts = await queue.get_job_counts()
    return counts["completed"] + counts["failed"] >= n


async def _workers(n: int) -> bool:
    return await get_redis().zcard(queue.keys.workers) >= n


async def _attempts(product_id: str) -> int:
    info = await queue.get_job(f"product-embedding:{product_id}")
    assert info is not None
    return info.attempts_made


async def _assert_own_vectors(store, texts: dict[str, str]) -> None:
    for product_id, text in texts.items():
        product = await store.get_product(product_id)
        assert product.embedding == pytest.approx(FakeOpenAI.vector_for(text, DIMS)), product_id


async def test_200_concurrent_jobs_share_a_handful_of_requests_and_each_gets_its_own_vector(
    store, fake_openai, monkeypatch
):
    monkeypatch.setenv("JOBQUEUE_PRODUCT_EMBEDDING_CONCURRENCY", "200")
    # Long enough that a loaded machine starting 200 jobs still fills whole batches.
    monkeypatch.setenv("JOBQUEUE_PRODUCT_EMBEDDING_BATCH_WAIT", "0.5")
    monkeypatch.setenv("JOBQUEUE_PRODUCT_EMBEDDING_WORKER_LEASE", "15")
    texts = await _seed(store, 200)
    with WorkerProcess("workers.EmbeddingSettings") as worker:
        await worker.wait_for(lambda: _workers(1), timeout=20, what="the worker to start")
        await jobqueue.enqueue_product_embeddings(list(texts))
        await worker.wait_for(lambda: _finished(200), timeout=60, what="200 embeddings")
    assert (await queue.get_job_counts())["completed"] == 200
    requests = fake_openai.requests_to(EMBEDDINGS)
    assert len(requests) <= math.ceil(200 / 64) + 3
    assert all(len(r.body["input"]) <= 64 for r in requests)
    assert sorted(t for r in requests for t in r.body["input"]) == sorted(texts.values())
    await _assert_own_vectors(store, texts)
    assert {await _attempts(p) for p in texts} == {1}


async def test_a_request_failing_with_500_retries_each_of_its_jobs_once_on_its_own(store, fake_openai, monkeypatch):
    monkeypatch.setenv("JOBQUEUE_PRODUCT_EMBEDDING_BATCH_WAIT", "0.2")
    texts = await _seed(store, 8)
    fake_openai.fail_next(status=500, path=EMBEDDINGS)
    await jobqueue.enqueue_product_embeddings(list(texts))
    await run_burst(embedding_settings())
    assert (await queue.get_job_counts())["completed"] == 8
    failed_request, *later = fake_openai.requests_to(EMBEDDINGS)
    in_failed = set(failed_request.body["input"])
    assert in_failed  # the 500 hit a request holding these jobs' texts
    for product_id, text in texts.items():
        # Each job of the failed request ran once more (its own attempt); the others ran once.
        assert await _attempts(product_id) == (2 if text in in_failed else 1), product_id
    assert fake_openai.embedded_counts() == {text: 1 for text in texts.values()}
    assert sum(len(r.body["input"]) for r in later) == 8
    await _assert_own_vectors(store, texts)


async def test_one_invalid_input_fails_only_its_own_job(store, fake_openai, monkeypatch):
    monkeypatch.setenv("JOBQUEUE_PRODUCT_EMBEDDING_BATCH_WAIT", "0.2")
    texts = await _seed(store, 6)
    fake_openai.reject_input(texts["p3"])
    handles = {h.job_id.split(":")[1]: h for h in await jobqueue.enqueue_product_embeddings(list(texts))}
    await run_burst(embedding_settings())
    with pytest.raises(JobFailedError, match="InvalidInputError: LLM provider returned 400") as info:
        await handles["p3"].result(timeout=5)
    assert info.value.attempts == 1  # a rejected input is not retried
    good = {p: t for p, t in texts.items() if p != "p3"}
    for product_id in good:
        assert (await handles[product_id].result(timeout=5)).status == "processed"
        assert await _attempts(product_id) == 1
    await _assert_own_vectors(store, good)
    assert (await store.get_product("p3")).embedding is None
    assert fake_openai.stats()["invalid"] >= 1


async def test_an_over_long_input_fails_before_it_joins_a_batch(store, fake_openai, monkeypatch):
    monkeypatch.setenv("EMBEDDING_MAX_INPUT_TOKENS", "40")
    texts = await _seed(store, 3)
    texts |= await _seed(store, 1, prefix="long", description="word " * 200)
    handles = {h.job_id.split(":")[1]: h for h in await jobqueue.enqueue_product_embeddings(list(texts))}
    await run_burst(embedding_settings())
    with pytest.raises(JobFailedError, match="EMBEDDING_MAX_INPUT_TOKENS") as info:
        await handles["long0"].result(timeout=5)
    assert info.value.attempts == 1
    sent = [t for r in fake_openai.requests_to(EMBEDDINGS) for t in r.body["input"]]
    assert texts["long0"] not in sent
    assert sorted(sent) == sorted(t for p, t in texts.items() if p != "long0")


async def test_a_429_pauses_the_whole_batcher_until_retry_after_has_passed(store, fake_openai, monkeypatch):
    texts = await _seed(store, 6)
    first, second = list(texts)[:3], list(texts)[3:]
    fake_openai.fail_next(status=429, headers={"Retry-After": "1"}, path=EMBEDDINGS)
    async with RunningWorker(embedding_settings()):
        await jobqueue.enqueue_product_embeddings(first)
        await wait_for(lambda: _has_requests(fake_openai, 1), what="the request answered 429")
        # Jobs that start during the pause wait in the batcher: no request before it has passed.
        await jobqueue.enqueue_product_embeddings(second)
        await wait_for(lambda: _finished(6), timeout=15, what="all six embeddings")
    rate_limited, *after = fake_openai.requests_to(EMBEDDINGS)
    assert after and all(r.at - rate_limited.at >= 1.0 for r in after)
    assert (await queue.get_job_counts())["completed"] == 6
    in_429 = set(rate_limited.body["input"])
    for product_id in texts:
        # The 429's jobs were retried after Retry-After; the held ones never failed an attempt.
        assert await _attempts(product_id) == (2 if texts[product_id] in in_429 else 1)
    assert {texts[p] for p in second}.isdisjoint(in_429)
    await _assert_own_vectors(store, texts)


async def _has_requests(fake: FakeOpenAI, n: int) -> bool:
    return len(fake.requests_to(EMBEDDINGS)) >= n


async def test_batch_size_1_turns_batching_off(store, fake_openai, monkeypatch):
    monkeypatch.setenv("JOBQUEUE_PRODUCT_EMBEDDING_BATCH_SIZE", "1")
    texts = await _seed(store, 5)
    await jobqueue.enqueue_product_embeddings(list(texts))
    await run_burst(embedding_settings())
    requests = fake_openai.requests_to(EMBEDDINGS)
    assert len(requests) == 5 and all(len(r.body["input"]) == 1 for r in requests)
    await _assert_own_vectors(store, texts)


async def test_product_and_taste_profile_workers_in_one_process_share_one_batcher(store, fake_openai, monkeypatch):
    monkeypatch.setenv("JOBQUEUE_PRODUCT_EMBEDDING_BATCH_WAIT", "0.3")
    await _seed(store, 3)
    for i in range(3):
        await store.upsert_taste_profile(f"t{i}", user_id=f"u{i}", answers={"likes": [f"thing {i}"]})
    async with (
        RunningWorker(embedding_settings()) as products,
        RunningWorker(taste_profile_settings()) as profiles,
    ):
        await wait_for(lambda: _started(products, profiles), what="both workers' on_startup")
        assert products.ctx["resources"].embedder.batcher is profiles.ctx["resources"].embedder.batcher
        await jobqueue.enqueue_product_embeddings(["p0", "p1", "p2"])
        for i in range(3):
            await jobqueue.enqueue_taste_profile_embedding(f"t{i}", f"u{i}")
        counts = jobqueue.taste_profile_embedding_queue.get_job_counts
        await wait_for(lambda: _finished(3), what="the product embeddings")
        await wait_for(lambda: _count_is(counts, "completed", 3), what="the taste-profile embeddings")
    assert sum(len(r.body["input"]) for r in fake_openai.requests_to(EMBEDDINGS)) == 6
    for i in range(3):
        assert len((await store.get_taste_profile(f"t{i}")).vector) == DIMS


async def _started(*workers) -> bool:
    return all("resources" in w.ctx for w in workers)


async def _count_is(counts, kind: str, n: int) -> bool:
    return (await counts())[kind] >= n


# The batcher on its own, against the loopback server through the real provider.


@pytest.fixture
async def provider(fake_openai):
    from workers.providers.llm import OpenAIProvider

    provider = OpenAIProvider(
        api_key="sk-test", base_url=fake_openai.base_url, model="m", embedding_model="e", dims=DIMS, timeout=5
    )
    yield provider
    await provider.aclose()


async def test_a_cancelled_caller_leaves_its_batch_without_breaking_it(provider, fake_openai):
    from workers.providers.batching import EmbeddingBatcher

    fake_openai.latency = 0.3
    batcher = EmbeddingBatcher(provider, batch_size=64, batch_wait=0.05)
    try:
        before_send = asyncio.create_task(batcher.embed("cancelled before the request"))
        in_flight = asyncio.create_task(batcher.embed("cancelled during the request"))
        kept = [asyncio.create_task(batcher.embed(f"kept {i}")) for i in range(3)]
        await asyncio.sleep(0)
        before_send.cancel()
        await wait_for(lambda: _has_requests(fake_openai, 1), what="the batch's request")
        in_flight.cancel()  # as a job's own timeout would
        vectors = await asyncio.gather(*kept)
        assert vectors == [FakeOpenAI.vector_for(f"kept {i}", DIMS) for i in range(3)]
        assert before_send.cancelled() and in_flight.cancelled()
        (request,) = fake_openai.requests_to(EMBEDDINGS)
        assert "cancelled before the request" not in request.body["input"]
        # The batcher still works afterwards.
        assert await batcher.embed("later") == FakeOpenAI.vector_for("later", DIMS)
    finally:
        await batcher.aclose()


async def test_a_vector_of_the_wrong_length_fails_only_its_caller(provider, fake_openai):
    from jobqueue.errors import PermanentJobError
    from workers.providers.batching import EmbeddingBatcher

    fake_openai.truncate_vector("short")
    batcher = EmbeddingBatcher(provider, batch_size=3, batch_wait=1)
    try:
        results = await asyncio.gather(*(batcher.embed(t) for t in ("a", "short", "b")), return_exceptions=True)
    finally:
        await batcher.aclose()
    assert results[0] == FakeOpenAI.vector_for("a", DIMS) and results[2] == FakeOpenAI.vector_for("b", DIMS)
    assert isinstance(results[1], PermanentJobError) and "dimensions" in str(results[1])
    assert len(fake_openai.requests_to(EMBEDDINGS)) == 1


async def test_a_full_batch_goes_at_once_and_an_empty_text_never_joins_one(provider, fake_openai):
    from workers.providers.batching import EmbeddingBatcher
    from workers.providers.llm import InvalidInputError

    batcher = EmbeddingBatcher(provider, batch_size=4, batch_wait=60)  # only a full batch can go
    try:
        with pytest.raises(InvalidInputError, match="empty"):
            await batcher.embed("  ")
        vectors = await asyncio.wait_for(asyncio.gather(*(batcher.embed(f"t{i}") for i in range(4))), 10)
    finally:
        await batcher.aclose()
    assert vectors == [FakeOpenAI.vector_for(f"t{i}", DIMS) for i in range(4)]
    (request,) = fake_openai.requests_to(EMBEDDINGS)
    assert request.body["input"] == ["t0", "t1", "t2", "t3"]


async def test_close_fails_waiting_callers_with_a_retryable_error(provider, fake_openai):
    from jobqueue.errors import RetryableJobError
    from workers.providers.batching import EmbeddingBatcher

    batcher = EmbeddingBatcher(provider, batch_size=64, batch_wait=60)
    waiting = asyncio.create_task(batcher.embed("never sent"))
    await asyncio.sleep(0)
    await batcher.aclose()
    await batcher.aclose()  # twice is fine
    with pytest.raises(RetryableJobError):
        await waiting
    with pytest.raises(RetryableJobError, match="closed"):
        await batcher.embed("after close")
    assert fake_openai.requests == []
