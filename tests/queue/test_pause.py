"""Pause holds across worker processes; active jobs finish; resume continues in priority order."""

import json
import time

import jobqueue
from jobqueue import product_embedding_queue as embeddings
from jobqueue.queue.events import parse_event
from tests.support.waiting import WorkerProcess, wait_for
from tests.support.workers import (
    RunningWorker,
    behaviour_key,
    counts,
    release_key,
    runs,
    settings_for,
)

SETTINGS = "tests.support.workers.EmbeddingTestSettings"


async def _workers_ticked_since(redis_client, since_ms, n):
    """True once ``n`` workers have ticked (heartbeat) twice after ``since_ms``."""
    seen = await redis_client.zrangebyscore(embeddings.keys.workers, since_ms + 150, "+inf")
    return len(seen) >= n


async def _completed(n):
    return (await embeddings.get_job_counts())["completed"] >= n


async def test_pause_holds_across_two_worker_processes_and_resume_continues(redis_client):
    with WorkerProcess(SETTINGS), WorkerProcess(SETTINGS):
        await wait_for(lambda: _workers_ticked_since(redis_client, 0, 2), what="two workers to start")
        await embeddings.pause()
        paused_at = int(time.time() * 1000)
        assert await embeddings.is_paused()
        plan = [(f"j{i}", 1 if i % 2 else 9) for i in range(10)]
        for pid, priority in plan:
            assert (await jobqueue.enqueue_product_embedding(pid, priority=priority)).created
        await wait_for(lambda: _workers_ticked_since(redis_client, paused_at, 2), what="both workers to tick")
        # Several poll and tick intervals have passed with both workers alive: nothing started.
        assert await runs(redis_client) == []
        assert await embeddings.get_job_counts() == counts(paused=10)
        assert {j.state for j in await embeddings.get_jobs("paused")} == {"paused"}
        await embeddings.resume()
        assert not await embeddings.is_paused()
        await wait_for(lambda: _completed(10), timeout=15, what="all jobs to complete")
    # The order CLAIM took them in is the order of its `active` events, written in the same step.
    # (Handler start times are not: a run claimed later may record its start before an earlier one
    # on the other worker has had its turn on a busy machine.)
    entries = await redis_client.xrange(embeddings.keys.events)
    claimed = [parse_event(eid, fields) for eid, fields in entries]
    started = [e.job_id.removeprefix("product-embedding:") for e in claimed if e.name == "active"]
    urgent = {pid for pid, priority in plan if priority == 1}
    assert len(started) == 10
    assert set(started[:5]) == urgent


async def test_active_job_finishes_while_paused_and_no_new_job_starts(redis_client):
    await redis_client.set(behaviour_key("long"), json.dumps({"block": True}))
    await jobqueue.enqueue_product_embedding("long")
    async with RunningWorker(settings_for(concurrency=3)):
        await wait_for(lambda: _active(1), what="the long job to start")
        await embeddings.pause()
        await jobqueue.enqueue_product_embeddings(["next-1", "next-2"])
        await redis_client.set(release_key("long"), 1)
        await wait_for(lambda: _completed(1), what="the active job to finish")
        since = int(time.time() * 1000)
        await wait_for(lambda: _workers_ticked_since(redis_client, since, 1), what="a tick after the finish")
        now = await embeddings.get_job_counts()
        assert (now["completed"], now["paused"], now["active"]) == (1, 2, 0)
        await embeddings.resume()
        await wait_for(lambda: _completed(3), what="the paused jobs to run after resume")


async def _active(n):
    return (await embeddings.get_job_counts())["active"] == n


async def test_a_paused_queue_starts_nothing_and_its_idle_worker_wakes_on_resume(redis_client):
    # CLAIM itself checks the pause flag, so no job starts in a paused queue, whatever the worker
    # knew; the idle worker waits on the queue's marker, which resume() writes: no poll to wait out.
    running = RunningWorker(settings_for())
    async with running:
        await wait_for(lambda: _workers_ticked_since(redis_client, 0, 1), what="the worker to start")
        await embeddings.pause()
        await jobqueue.enqueue_product_embedding("edge")
        polls = running.polls
        await wait_for(lambda: _polled(running, polls + 3), what="3 more polls")
        assert await runs(redis_client) == []
        assert await embeddings.get_job_counts() == counts(paused=1)
        assert (await embeddings.get_job("product-embedding:edge")).attempts_made == 0
        await embeddings.resume()
        await wait_for(lambda: _completed(1), timeout=0.5, interval=0.005, what="the job to run at once on resume")
    assert [r["try"] for r in await runs(redis_client)] == [1]


async def _polled(running, n):
    return running.polls >= n
