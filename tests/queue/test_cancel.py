"""cancel_job from any process: a waiting, delayed or paused job ends failed at once; a running one is
stopped by its worker within about a second; either way ``failed`` with ``JobCancelled``, not retried."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from typing import Any

import pytest

import jobqueue
from jobqueue import product_embedding_queue as embeddings
from jobqueue.cli import run
from jobqueue.errors import JobFailedError, JobNotFoundError, JobStateError
from jobqueue.worker._state import WorkerState
from tests.support.waiting import WorkerProcess, wait_for
from tests.support.workers import (
    CANCELLED_KEY,
    RunningWorker,
    behaviour_key,
    counts,
    run_burst,
    runs,
    settings_for,
)
from tests.support.workers import test_options as options_for


async def _events_of(job_id: str, until: str = "failed") -> list[Any]:
    out = []
    async with contextlib.aclosing(embeddings.events("0")) as stream:
        async for event in stream:
            if event.job_id == job_id:
                out.append(event)
                if event.name == until:
                    return out
    return out


async def _state(handle: Any, state: str) -> bool:
    return await handle.status() == state


@pytest.mark.parametrize("state", ["waiting", "delayed", "paused"])
async def test_a_job_that_is_not_running_ends_failed_at_once(state):
    if state == "paused":
        await embeddings.pause()
    handle = await jobqueue.enqueue_product_embedding("c-queued", priority=3, delay=60 if state == "delayed" else None)
    assert await handle.status() == state
    assert await embeddings.cancel_job(handle.job_id, reason="superseded by a newer import") == state
    job = await embeddings.get_job(handle.job_id)
    assert job.state == "failed" and job.error_type == "JobCancelled"
    assert job.error == "JobCancelled: superseded by a newer import"
    assert job.payload["product_id"] == "c-queued" and job.priority == 3 and job.finished_at is not None
    assert await embeddings.get_job_counts() == counts(failed=1)
    with pytest.raises(JobFailedError, match="superseded by a newer import"):
        await handle.result(timeout=1)
    events = await _events_of(handle.job_id)
    assert [e.name for e in events] == ["added", "cancelled", "failed"]
    assert events[1].data == {"reason": "superseded by a newer import", "running": False}
    assert events[2].data["error_type"] == "JobCancelled"
    # ended for good: a worker finds nothing to run
    await embeddings.resume()
    await run_burst(settings_for())
    assert await embeddings.get_job_counts() == counts(failed=1)


async def test_a_running_job_in_another_process_stops_within_about_a_second(redis_client):
    await redis_client.set(behaviour_key("c-running"), json.dumps({"block": True}))
    handle = await jobqueue.enqueue_product_embedding("c-running")
    with WorkerProcess("tests.support.workers.EmbeddingTestSettings") as worker:
        await worker.wait_for(lambda: _state(handle, "active"), timeout=20, what="the job to start")
        asked = time.monotonic()
        assert await embeddings.cancel_job(handle.job_id, reason="burning budget") == "active"
        await worker.wait_for(lambda: _state(handle, "failed"), timeout=5, what="the job to end cancelled")
        took = time.monotonic() - asked
        assert "job product-embedding:c-running cancelled while running: burning budget" in worker.output()
    assert took < 2.5
    job = await embeddings.get_job(handle.job_id)
    assert job.error_type == "JobCancelled" and job.error == "JobCancelled: burning budget"
    assert job.attempts_made == 1  # not retried, though the queue allows three attempts
    assert [r["try"] for r in await runs(redis_client)] == [1]
    assert [c.decode() for c in await redis_client.lrange(CANCELLED_KEY, 0, -1)] == [handle.job_id]
    assert [e.name for e in await _events_of(handle.job_id)] == ["added", "active", "cancelled", "failed"]
    assert not await redis_client.exists(embeddings.keys.cancel(handle.job_id))


async def test_cancelling_a_running_job_drops_its_pending_rerun(redis_client):
    await redis_client.set(behaviour_key("c-rerun"), json.dumps({"block": True}))
    handle = await jobqueue.enqueue_product_embedding("c-rerun")
    async with RunningWorker(settings_for()):
        await wait_for(lambda: _state(handle, "active"), what="the job to start")
        assert (await jobqueue.enqueue_product_embedding("c-rerun")).rerun
        await embeddings.cancel_job(handle.job_id)
        await wait_for(lambda: _state(handle, "failed"), what="the job to end cancelled")
    job = await embeddings.get_job(handle.job_id)
    assert job.error == "JobCancelled: cancelled by request"
    assert await embeddings.get_job_counts() == counts(failed=1)


async def test_a_cancelled_job_whose_worker_died_is_cancelled_on_its_next_run(redis_client):
    await redis_client.set(behaviour_key("c-orphan"), json.dumps({"block": True}))
    handle = await jobqueue.enqueue_product_embedding("c-orphan")
    gone = WorkerState(embeddings, options_for(), "a-worker-that-dies", redis_client)
    assert len((await gone.claim(1)).jobs) == 1  # its run never reports back
    assert await embeddings.cancel_job(handle.job_id, reason="stop it") == "active"
    async with RunningWorker(settings_for()):  # returns the expired run, runs it again, stops it
        await wait_for(lambda: _state(handle, "failed"), timeout=10, what="the next run to be cancelled")
    job = await embeddings.get_job(handle.job_id)
    assert job.error == "JobCancelled: stop it" and job.attempts_made == 2
    names = [e.name for e in await _events_of(handle.job_id)]
    assert names == ["added", "active", "cancelled", "stalled", "active", "failed"]


async def test_cancel_refuses_an_unknown_or_finished_job():
    with pytest.raises(JobNotFoundError):
        await embeddings.cancel_job("product-embedding:nobody")
    with pytest.raises(JobNotFoundError):
        await embeddings.cancel_job("product-enrichment:other-queue")
    handle = await jobqueue.enqueue_product_embedding("c-done")
    await run_burst(settings_for())
    with pytest.raises(JobStateError, match="is completed: a finished job cannot be cancelled"):
        await embeddings.cancel_job(handle.job_id)


def test_the_cancel_command_cancels_and_reports_errors_in_one_line(redis_url, capsys):
    async def enqueue() -> None:
        await jobqueue.enqueue_product_embedding("c-cli")
        await jobqueue.close_queues()

    asyncio.run(enqueue())
    with pytest.raises(SystemExit) as exit_info:
        run(["cancel", "product-embedding", "product-embedding:c-cli", "--reason", "by hand"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert out == "product-embedding: cancelled product-embedding:c-cli (waiting): failed (JobCancelled)\n"
    with pytest.raises(SystemExit) as exit_info:
        run(["cancel", "product-embedding", "product-embedding:c-cli"])
    assert exit_info.value.code == 1
    err = capsys.readouterr().err
    assert err == "jobqueue: error: job product-embedding:c-cli is failed: a finished job cannot be cancelled\n"


async def test_cancelling_one_job_of_an_embeddings_batch_leaves_the_others_running(store, fake_openai, monkeypatch):
    monkeypatch.setenv("JOBQUEUE_PRODUCT_EMBEDDING_BATCH_WAIT", "0.2")
    fake_openai.latency = 2.0  # the batch's request is in flight while the job is cancelled
    ids = [f"c-batch-{i}" for i in range(4)]
    for pid in ids:
        await store.upsert_product(pid, name=f"Product {pid}", price=1000, description="An item.")
    handles = await jobqueue.enqueue_product_embeddings(ids)

    async def all_active() -> bool:
        return (await embeddings.get_job_counts())["active"] == 4

    with WorkerProcess("workers.EmbeddingSettings") as worker:
        await worker.wait_for(all_active, timeout=20, what="the four jobs to start")
        await wait_for(lambda: _requests(fake_openai), what="the batch's request")
        await embeddings.cancel_job(handles[0].job_id, reason="not this one")
        await worker.wait_for(lambda: _state(handles[0], "failed"), timeout=5, what="the cancelled job to end")
        assert {await h.status() for h in handles[1:]} == {"active"}  # its batch is still in flight
        for h in handles[1:]:
            assert (await h.result(timeout=15)).status == "processed"
    (request,) = fake_openai.requests_to("/v1/embeddings")
    assert len(request.body["input"]) == 4
    assert (await embeddings.get_job(handles[0].job_id)).error_type == "JobCancelled"
    assert (await store.get_product("c-batch-0")).embedding is None
    for pid in ids[1:]:
        assert (await store.get_product(pid)).embedding is not None


async def _requests(fake_openai: Any) -> bool:
    return len(fake_openai.requests_to("/v1/embeddings")) >= 1
