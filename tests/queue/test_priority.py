"""Priority: lower number first, FIFO within a level; delayed and retried jobs keep theirs."""

import asyncio
import json

import jobqueue
from jobqueue import product_embedding_queue as embeddings
from tests.support.waiting import wait_for
from tests.support.workers import behaviour_key, make_worker, release_key, run_burst, runs, settings_for


async def test_mixed_priorities_run_in_priority_then_fifo_order(redis_client):
    plan = [(f"j{i:02d}", (i * 7) % 10 + 1) for i in range(30)]
    for pid, priority in plan:
        await jobqueue.enqueue_product_embedding(pid, priority=priority)
    await run_burst(settings_for(concurrency=1))
    order = [r["product_id"] for r in await runs(redis_client)]
    expected = [pid for pid, _ in sorted(plan, key=lambda item: item[1])]  # sorted() is stable: FIFO
    assert order == expected


async def test_due_delayed_job_runs_ahead_of_lower_priority_waiting_jobs(redis_client):
    await jobqueue.enqueue_product_embedding("urgent-later", priority=1, delay=0.3)
    for i in range(5):
        await jobqueue.enqueue_product_embedding(f"low-{i}", priority=5)
    await embeddings.pause()
    # Wait until the delayed job is due, so that once resumed it competes with the waiting ones.
    await wait_for(lambda: _state_is("product-embedding:urgent-later", "paused"), what="the delayed job to become due")
    await embeddings.resume()
    await run_burst(settings_for(concurrency=1))
    order = [r["product_id"] for r in await runs(redis_client)]
    assert order[0] == "urgent-later"
    assert order[1:] == [f"low-{i}" for i in range(5)]


async def _state_is(job_id, state):
    return await embeddings.get_job_state(job_id) == state


async def test_retried_job_keeps_its_priority(redis_client):
    await redis_client.set(behaviour_key("flaky"), json.dumps({"fail": 1}))
    await jobqueue.enqueue_product_embedding("flaky", priority=2)
    await jobqueue.enqueue_product_embedding("first-low", priority=6)
    # The flaky job runs first (priority 2), fails, and is retried after 0.2 s; meanwhile the
    # worker is busy with a blocked low job. More low jobs arrive; the retry must beat them.
    await redis_client.set(behaviour_key("first-low"), json.dumps({"block": True}))
    for i in range(4):
        await jobqueue.enqueue_product_embedding(f"low-{i}", priority=6)

    worker = make_worker(settings_for(concurrency=1))
    task = asyncio.create_task(worker.async_run())
    try:
        await wait_for(lambda: _ran(redis_client, "first-low"), what="the blocked job to start")
        info = await embeddings.get_job("product-embedding:flaky")
        assert info.state == "delayed" and info.attempts_made == 1 and "transient failure 1" in info.error
        # Due while the worker is full: it moves into its priority band when the next claim looks.
        await wait_for(lambda: _state_is("product-embedding:flaky", "waiting"), what="the retry to be due")
        await redis_client.set(release_key("first-low"), 1)
        await asyncio.wait_for(task, 20)
    finally:
        await worker.close()
    order = [r["product_id"] for r in await runs(redis_client)]
    assert order == ["flaky", "first-low", "flaky", "low-0", "low-1", "low-2", "low-3"]


async def _ran(redis_client, pid):
    return any(r["product_id"] == pid for r in await runs(redis_client))
