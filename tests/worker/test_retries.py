"""Delays, retries with exponential backoff, and errors that fail at once."""

import itertools
import json
import random

import pytest

import jobqueue
from jobqueue import JobFailedError, exponential_backoff
from jobqueue import product_embedding_queue as embeddings
from tests.support.workers import behaviour_key, run_burst, runs, settings_for


def test_backoff_doubles_from_base_and_is_capped():
    assert [exponential_backoff(a, base=2, cap=60) for a in range(1, 8)] == [2, 4, 8, 16, 32, 60, 60]


def test_backoff_jitter_stays_within_its_fraction():
    rng = random.Random(7)
    delays = [exponential_backoff(3, base=1, cap=100, jitter=0.25, rng=rng) for _ in range(200)]
    assert all(3.0 <= d <= 4.0 for d in delays)
    assert len(set(delays)) > 100


def test_retry_delay_prefers_the_errors_retry_after_capped_at_backoff_max():
    from jobqueue import QueueOptions, RetryableJobError
    from jobqueue.worker._runner import retry_delay

    options = QueueOptions(backoff_base=2, backoff_max=60, backoff_jitter=0)
    assert retry_delay(RuntimeError("x"), 3, options) == 8
    assert retry_delay(RetryableJobError("429"), 3, options) == 8
    assert retry_delay(RetryableJobError("429", retry_after=1.5), 3, options) == 1.5
    assert retry_delay(RetryableJobError("429", retry_after=86400), 1, options) == 60


def test_backoff_rejects_attempt_zero():
    with pytest.raises(ValueError):
        exponential_backoff(0, base=1, cap=1)


async def test_delayed_job_never_starts_early(redis_client):
    handle = await jobqueue.enqueue_product_embedding("later", delay=0.5)
    enqueued = (await embeddings.get_job(handle.job_id)).enqueued_at.timestamp()
    assert await handle.status() == "delayed"
    await run_burst(settings_for(poll_delay=0.01))
    (run,) = await runs(redis_client)
    assert run["at"] - enqueued >= 0.5
    # ...and starts within about one poll interval of being due (generous bound for a busy CI box).
    assert run["at"] - enqueued < 0.5 + 0.5


async def test_backoff_delays_grow_as_configured(redis_client):
    await redis_client.set(behaviour_key("flaky"), json.dumps({"fail": 3}))
    handle = await jobqueue.enqueue_product_embedding("flaky")
    await run_burst(settings_for(attempts=4, backoff_base=0.2, backoff_jitter=0))
    tries = await runs(redis_client)
    assert [t["try"] for t in tries] == [1, 2, 3, 4]
    gaps = [b["at"] - a["at"] for a, b in itertools.pairwise(tries)]
    for gap, expected in zip(gaps, [0.2, 0.4, 0.8], strict=True):
        assert gap >= expected
    assert gaps[0] < gaps[1] < gaps[2]
    result = await handle.result(timeout=5)
    assert result.status == "processed"
    info = await embeddings.get_job(handle.job_id)
    assert info.state == "completed" and info.attempts_made == 4


async def test_retry_after_from_the_error_replaces_the_backoff(redis_client):
    await redis_client.set(behaviour_key("limited"), json.dumps({"fail": 1, "retry_after": 0.6}))
    await jobqueue.enqueue_product_embedding("limited")
    await run_burst(settings_for(attempts=2, backoff_base=0.01))
    first, second = await runs(redis_client)
    assert second["at"] - first["at"] >= 0.6


async def test_non_retryable_error_fails_at_once(redis_client):
    await redis_client.set(behaviour_key("missing"), json.dumps({"permanent": True}))
    handle = await jobqueue.enqueue_product_embedding("missing")
    await run_burst(settings_for(attempts=5))
    assert len(await runs(redis_client)) == 1
    with pytest.raises(JobFailedError) as info:
        await handle.result(timeout=5)
    assert info.value.attempts == 1
    assert "PermanentJobError: product missing cannot be embedded" in info.value.error


async def test_exhausted_job_lands_in_failed_with_error_attempts_and_times(redis_client):
    await redis_client.set(behaviour_key("doomed"), json.dumps({"fail": 99}))
    handle = await jobqueue.enqueue_product_embedding("doomed")
    await run_burst(settings_for(attempts=3, backoff_base=0.05))
    assert len(await runs(redis_client)) == 3
    counts = await embeddings.get_job_counts()
    assert counts["failed"] == 1 and counts["waiting"] == counts["delayed"] == counts["active"] == 0
    (job,) = await embeddings.get_jobs("failed")
    assert job.job_id == handle.job_id and job.state == "failed"
    assert job.attempts_made == 3
    assert job.error == "RuntimeError: transient failure 3" and job.error_type == "RuntimeError"
    assert job.enqueued_at <= job.started_at <= job.finished_at
    with pytest.raises(JobFailedError, match="after 3 attempt"):
        await handle.result(timeout=1)


async def test_invalid_payload_in_redis_fails_without_retry(redis_client):
    # A job written by something other than our helpers: the worker validates before running.
    job = {"t": None, "f": "product_embedding", "a": [{"product_id": ""}, 2], "k": {}, "et": 1}
    await redis_client.set("arq:job:product-embedding:x", json.dumps(job))
    await redis_client.zadd(embeddings.keys.queue, {"product-embedding:x": -900000000000.875})
    await run_burst(settings_for())
    info = await embeddings.get_job("product-embedding:x")
    assert info.state == "failed" and info.attempts_made == 1
    assert info.error.startswith("InvalidJobError: invalid payload: product_id")
    assert await runs(redis_client) == []
