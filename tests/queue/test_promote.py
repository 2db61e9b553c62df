"""Promoting a delayed job makes it due now, at its priority; only delayed jobs can be promoted."""

import datetime as dt

import pytest

import jobqueue
from jobqueue import JobNotFoundError, JobStateError
from jobqueue import product_embedding_queue as embeddings
from tests.support.waiting import wait_for
from tests.support.workers import counts, run_burst, runs, settings_for


async def test_promoted_delayed_job_runs_now_ahead_of_lower_priorities(redis_client):
    await jobqueue.enqueue_product_embedding("later", priority=9)
    delayed = await jobqueue.enqueue_product_embedding("urgent", priority=1, delay=3600)
    assert await delayed.status() == "delayed"
    # A promotion in the enqueue's own millisecond is "due at once" (no due time shown); the test
    # checks the due time a promotion writes, so it promotes once Redis's clock has moved on.
    enqueued_ms = int((await embeddings.get_job(delayed.job_id)).enqueued_at.timestamp() * 1000)

    async def clock_moved_on() -> bool:
        seconds, micros = await redis_client.time()
        return seconds * 1000 + micros // 1000 > enqueued_ms

    await wait_for(clock_moved_on, what="Redis's clock to pass the enqueue's millisecond")
    await embeddings.promote_job(delayed.job_id)

    job = await embeddings.get_job(delayed.job_id)
    assert (job.state, job.priority) == ("waiting", 1)
    # Due from its promotion on (not an hour after its enqueue): its wait is counted from then.
    assert job.enqueued_at <= job.due_at <= dt.datetime.now(dt.UTC)
    assert await embeddings.get_job_counts() == counts(waiting=2)
    await run_burst(settings_for())
    assert [r["product_id"] for r in await runs(redis_client)] == ["urgent", "later"]
    done = await embeddings.get_job(delayed.job_id)
    assert done.due_at == job.due_at and done.waited == (done.started_at - job.due_at).total_seconds()


async def test_promote_refuses_waiting_and_unknown_jobs():
    waiting = await jobqueue.enqueue_product_embedding("now")
    with pytest.raises(JobStateError, match="not delayed"):
        await embeddings.promote_job(waiting.job_id)
    with pytest.raises(JobNotFoundError):
        await embeddings.promote_job("product-embedding:nobody")
    assert await embeddings.get_job_counts() == counts(waiting=1)
