"""Operating a queue: inspect, clean, drain, remove, retry."""

import datetime as dt
import json

import pytest

import jobqueue
from jobqueue import JobNotFoundError, JobStateError
from jobqueue import product_embedding_queue as embeddings
from jobqueue.worker._scheduler import fire_due, slot_job_id
from tests.support.waiting import wait_for
from tests.support.workers import RunningWorker, behaviour_key, release_key, run_burst, runs, settings_for


async def _fail_these(redis_client, *pids):
    for pid in pids:
        await redis_client.set(behaviour_key(pid), json.dumps({"permanent": True}))


async def test_get_jobs_lists_each_state_in_order(redis_client):
    await _fail_these(redis_client, "f1")
    await jobqueue.enqueue_product_embeddings(["done-1", "f1"])
    await run_burst(settings_for())
    await jobqueue.enqueue_product_embedding("w-low", priority=5)
    await jobqueue.enqueue_product_embedding("w-high", priority=1)
    await jobqueue.enqueue_product_embedding("later", delay=600)
    assert [j.job_id for j in await embeddings.get_jobs("waiting")] == [
        "product-embedding:w-high",
        "product-embedding:w-low",
    ]
    assert [j.job_id for j in await embeddings.get_jobs("waiting", 1, 1)] == ["product-embedding:w-low"]
    (delayed,) = await embeddings.get_jobs("delayed")
    assert delayed.state == "delayed" and delayed.due_at > dt.datetime.now(dt.UTC)
    assert [j.job_id for j in await embeddings.get_jobs("completed")] == ["product-embedding:done-1"]
    (failed,) = await embeddings.get_jobs("failed")
    assert failed.error_type == "PermanentJobError"
    assert await embeddings.get_jobs("paused") == []
    assert await embeddings.get_job("product-embedding:nope") is None
    assert (await embeddings.get_job("product-embedding:done-1")).to_dict()["state"] == "completed"


async def test_active_jobs_are_listed_and_cannot_be_removed(redis_client):
    await redis_client.set(behaviour_key("busy"), json.dumps({"block": True}))
    await jobqueue.enqueue_product_embedding("busy")
    async with RunningWorker(settings_for()):
        await wait_for(lambda: _active_count(1), what="the job to start")
        (active,) = await embeddings.get_jobs("active")
        assert active.job_id == "product-embedding:busy" and active.started_at is not None
        assert active.attempts_made == 0
        with pytest.raises(JobStateError):
            await embeddings.remove_job("product-embedding:busy")
        await redis_client.set(release_key("busy"), 1)
        await wait_for(lambda: _state("product-embedding:busy", "completed"), what="completion")


async def _active_count(n):
    return (await embeddings.get_job_counts())["active"] == n


async def _state(job_id, state):
    return await embeddings.get_job_state(job_id) == state


async def test_remove_job_removes_waiting_completed_and_failed_jobs(redis_client):
    await _fail_these(redis_client, "f1")
    await jobqueue.enqueue_product_embeddings(["c1", "f1"])
    await run_burst(settings_for())
    await jobqueue.enqueue_product_embedding("w1")
    for job_id in ("product-embedding:c1", "product-embedding:f1", "product-embedding:w1"):
        assert await embeddings.remove_job(job_id) is True
        assert await embeddings.get_job(job_id) is None
    assert await embeddings.remove_job("product-embedding:w1") is False
    assert set((await embeddings.get_job_counts()).values()) == {0}


async def test_clean_removes_old_jobs_of_one_state_up_to_a_limit(redis_client):
    await jobqueue.enqueue_product_embeddings([f"c{i}" for i in range(5)])
    await run_burst(settings_for())
    assert await embeddings.clean(dt.timedelta(hours=1), 0, "completed") == []
    removed = await embeddings.clean(0, 2, "completed")
    assert len(removed) == 2
    assert (await embeddings.get_job_counts())["completed"] == 3
    await jobqueue.enqueue_product_embeddings(["w1", "w2"])
    await jobqueue.enqueue_product_embedding("d1", delay=600)
    assert sorted(await embeddings.clean(0, 0, "waiting")) == ["product-embedding:w1", "product-embedding:w2"]
    assert await embeddings.clean(3600, 0, "delayed") == []
    assert await embeddings.clean(0, 0, "delayed") == ["product-embedding:d1"]
    assert await redis_client.exists("arq:job:product-embedding:w1") == 0


async def test_drain_removes_waiting_and_optionally_delayed_jobs():
    await jobqueue.enqueue_product_embeddings(["a", "b", "c"])
    await jobqueue.enqueue_product_embedding("d", delay=600)
    assert await embeddings.drain() == 3
    assert (await embeddings.get_job_counts())["delayed"] == 1
    assert await embeddings.drain(delayed=True) == 1
    assert set((await embeddings.get_job_counts()).values()) == {0}


async def test_retry_job_puts_a_failed_job_back_with_fresh_attempts(redis_client):
    await redis_client.set(behaviour_key("flaky"), json.dumps({"fail": 99}))
    handle = await jobqueue.enqueue_product_embedding("flaky", priority=4, triggered_by="t")
    await run_burst(settings_for(attempts=2, backoff_base=0.01))
    assert await handle.status() == "failed"
    with pytest.raises(JobStateError):
        await _retry_waiting()
    await redis_client.delete(behaviour_key("flaky"))
    retried = await embeddings.retry_job(handle.job_id)
    assert retried.created and await retried.status() == "waiting"
    info = await embeddings.get_job(handle.job_id)
    assert info.priority == 4 and info.payload["triggered_by"] == "t" and info.attempts_made == 0
    await run_burst(settings_for())
    assert (await retried.result(timeout=5)).status == "processed"
    with pytest.raises(JobNotFoundError):
        await embeddings.retry_job("product-embedding:none")


async def _retry_waiting():
    handle = await jobqueue.enqueue_product_embedding("still-waiting")
    await embeddings.retry_job(handle.job_id)


async def test_retry_failed_retries_every_failed_job(redis_client):
    ids = [f"f{i}" for i in range(12)]
    await _fail_these(redis_client, *ids)
    await jobqueue.enqueue_product_embeddings(ids)
    await run_burst(settings_for(concurrency=4))
    assert (await embeddings.get_job_counts())["failed"] == 12
    for pid in ids:
        await redis_client.delete(behaviour_key(pid))
    await jobqueue.enqueue_product_embedding("f0")  # superseded: a new f0 job already waits
    handles = await embeddings.retry_failed()
    assert sum(h.created for h in handles) == 11
    counts = await embeddings.get_job_counts()
    assert (counts["failed"], counts["waiting"]) == (0, 12)
    await run_burst(settings_for(concurrency=4))
    assert (await embeddings.get_job_counts())["completed"] == 12
    assert len(await runs(redis_client)) == 24


async def _failed_schedule_job(redis_client) -> str:
    """A job a schedule enqueued (its id is the slot's, not the payload's) that failed."""
    await _fail_these(redis_client, "p1")
    schedule = await jobqueue.upsert_schedule("hourly", embeddings, every=1, payload={"product_id": "p1"}, priority=5)
    slot = int(schedule.next_run.timestamp() * 1000)
    await wait_for(lambda: _redis_time_past(redis_client, slot), what="the schedule's slot to be due")
    await fire_due(embeddings, redis_client)
    await jobqueue.remove_schedule("hourly")  # its job stays; no more slots fire
    job_id = slot_job_id(embeddings, "hourly", slot)
    await run_burst(settings_for())
    assert await embeddings.get_job_state(job_id) == "failed"
    await redis_client.delete(behaviour_key("p1"))
    return job_id


async def _redis_time_past(redis_client, ms):
    seconds, micros = await redis_client.time()
    return seconds * 1000 + micros // 1000 >= ms


async def _only_waiting(job_id):
    info = await embeddings.get_job(job_id)
    assert (info.state, info.priority, info.payload, info.attempts_made) == ("waiting", 5, {"product_id": "p1"}, 0)
    assert await embeddings.get_job("product-embedding:p1") is None, "retried under the payload's id"
    counts = await embeddings.get_job_counts()
    assert (counts["failed"], counts["waiting"]) == (0, 1)


async def test_retry_job_puts_back_the_failed_job_of_a_schedule_under_its_own_id(redis_client):
    job_id = await _failed_schedule_job(redis_client)
    retried = await embeddings.retry_job(job_id)
    assert (retried.job_id, retried.created) == (job_id, True)
    await _only_waiting(job_id)
    await run_burst(settings_for())
    assert (await retried.result(timeout=5)).status == "processed"


async def test_retry_failed_puts_back_the_failed_job_of_a_schedule_under_its_own_id(redis_client):
    job_id = await _failed_schedule_job(redis_client)
    handles = await embeddings.retry_failed()
    assert [(h.job_id, h.created) for h in handles] == [(job_id, True)]
    await _only_waiting(job_id)
    assert await embeddings.retry_failed() == [], "nothing is failed any more"
