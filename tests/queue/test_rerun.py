"""No lost update: an enqueue that finds its job active makes it run once more, with the newest payload."""

import json

import jobqueue
from jobqueue import product_embedding_queue as embeddings
from tests.support.waiting import wait_for
from tests.support.workers import RunningWorker, behaviour_key, counts, release_key, runs, settings_for


async def _run_count(redis_client, n):
    return len(await runs(redis_client)) >= n


async def test_enqueue_while_active_runs_once_more_with_newest_payload(redis_client):
    await redis_client.set(behaviour_key("busy"), json.dumps({"block": True}))
    first = await jobqueue.enqueue_product_embedding("busy", triggered_by="v1")
    async with RunningWorker(settings_for(concurrency=2)):
        await wait_for(lambda: _run_count(redis_client, 1), what="the first run to start")
        assert await first.status() == "active"
        updates = [await jobqueue.enqueue_product_embedding("busy", triggered_by=f"v{i}") for i in range(2, 12)]
        assert all(not h.created and h.rerun for h in updates)
        during = await embeddings.get_job_counts()
        assert during["active"] == 1 and during["waiting"] == 0
        await redis_client.set(release_key("busy"), 1)
        await wait_for(lambda: _state(first.job_id, "completed"), timeout=10, what="the rerun to complete")
    seen = await runs(redis_client)
    assert [r["triggered_by"] for r in seen] == ["v1", "v11"]
    info = await embeddings.get_job(first.job_id)
    assert info.payload["triggered_by"] == "v11" and info.attempts_made == 1
    assert await embeddings.get_job_counts() == counts(completed=1)


async def _state(job_id, state):
    return await embeddings.get_job_state(job_id) == state


async def test_enqueue_while_retrying_updates_the_pending_retry(redis_client):
    await redis_client.set(behaviour_key("retrying"), json.dumps({"fail": 1, "block": True}))
    await jobqueue.enqueue_product_embedding("retrying", triggered_by="old")
    async with RunningWorker(settings_for(backoff_base=0.3)):
        await wait_for(lambda: _run_count(redis_client, 1), what="the first attempt")
        handle = await jobqueue.enqueue_product_embedding("retrying", triggered_by="new")
        assert handle.rerun
        await redis_client.set(release_key("retrying"), 1)
        await wait_for(lambda: _state(handle.job_id, "completed"), timeout=10, what="completion")
    # The newest payload replaces the pending retry and starts with fresh attempts (it fails once,
    # as the behaviour says for every first try, then succeeds).
    assert [(r["triggered_by"], r["try"]) for r in await runs(redis_client)] == [("old", 1), ("new", 1), ("new", 2)]
