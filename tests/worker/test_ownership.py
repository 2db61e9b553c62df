"""Run ownership: every transition of a job is checked against the run (token) that owns it.

Each test here reproduces a way the job system lost a job, a newer payload or an exact count when
two writers (arq's pipelines and our scripts) changed a job without knowing who owned it.
"""

import json

import pytest

import jobqueue
from jobqueue import JobNotFoundError, JobStateError
from jobqueue import product_embedding_queue as embeddings
from tests.support.waiting import WorkerProcess, wait_for
from tests.support.workers import (
    RunningWorker,
    behaviour_key,
    cleaned_key,
    counts,
    release_key,
    run_burst,
    runs,
    settings_for,
)

SETTINGS = "tests.support.workers.EmbeddingTestSettings"  # worker lease 1 s


async def _state(job_id: str) -> str:
    info = await embeddings.get_job(job_id)
    return info.state if info else "unknown"


async def _runs_at_least(redis_client, n):
    return len(await runs(redis_client)) >= n


async def test_a_handler_that_is_slow_to_cancel_after_its_timeout_is_retried_then_failed(redis_client):
    # arq's own timeout used to be ours + 5 s and covered START and cleanup too; a handler whose
    # cancellation took longer than that was ended by arq, which deleted the job: no record, all
    # counts 0. Now our timeout is the only one that fires, whatever the handler does.
    await redis_client.set(behaviour_key("slow"), json.dumps({"sleep_then_slow_cancel": 5.5}))
    handle = await jobqueue.enqueue_product_embedding("slow")
    await run_burst(settings_for(timeout=0.3, cancel_grace=0.1, attempts=2, backoff_base=0.01))
    info = await embeddings.get_job("product-embedding:slow")
    assert info.state == "failed"
    assert info.error_type == "TimeoutError" and "timeout (0.3s)" in info.error
    assert info.attempts_made == 2
    assert [r["try"] for r in await runs(redis_client)] == [1, 2]
    assert await embeddings.get_job_counts() == counts(failed=1)
    with pytest.raises(jobqueue.JobFailedError):
        await handle.result(timeout=1)
    # The two abandoned clean-ups finish in their own time; let them, so nothing leaks past the test.
    await wait_for(lambda: _cleaned(redis_client, "slow", 2), timeout=15, what="both clean-ups")


async def _cleaned(redis_client, pid, n):
    return int(await redis_client.get(cleaned_key(pid)) or 0) >= n


async def test_a_new_payload_is_never_overwritten_by_an_older_pending_rerun(redis_client):
    # v2 arrives while v1 runs (a rerun is recorded). Then the job key disappears as if the run had
    # ended in arq, and v3 arrives: it must not create a second job beside the running one, and the
    # run's end must not put v2 over v3. The queued payload is v3.
    await redis_client.set(behaviour_key("p"), json.dumps({"block": True, "per_try": True}))
    await jobqueue.enqueue_product_embedding("p", triggered_by="v1")
    async with RunningWorker(settings_for(concurrency=2)):
        await wait_for(lambda: _runs_at_least(redis_client, 1), what="v1 to start")
        assert (await jobqueue.enqueue_product_embedding("p", triggered_by="v2")).rerun
        await redis_client.delete("arq:job:product-embedding:p")
        third = await jobqueue.enqueue_product_embedding("p", triggered_by="v3")
        assert (third.created, third.rerun) == (False, True)
        await redis_client.set(release_key("p", 1), 1)
        await wait_for(lambda: _runs_at_least(redis_client, 2), what="the rerun to start")
        await redis_client.set(release_key("p", 1), 1)
    assert [r["triggered_by"] for r in await runs(redis_client)] == ["v1", "v3"]
    assert await embeddings.get_job_counts() == counts(completed=1)


async def test_a_late_finish_of_a_returned_run_changes_nothing_of_the_next_run(redis_client):
    # Worker A never renews its lease (its only tick is at start-up), so its run is presumed dead
    # and returned; worker B runs the job again and a newer payload is recorded for B's run. A
    # then finishes late: its FINISH holds an old token and must change nothing.
    await redis_client.set(behaviour_key("p"), json.dumps({"block": True, "per_try": True}))
    handle = await jobqueue.enqueue_product_embedding("p", triggered_by="v1")
    slow = settings_for(tick_interval=60, worker_lease=0.5)
    fast = settings_for(tick_interval=0.05, worker_lease=0.5)
    async with RunningWorker(slow) as a:
        await wait_for(lambda: _runs_at_least(redis_client, 1), what="A's run to start")
        async with RunningWorker(fast):
            await wait_for(lambda: _runs_at_least(redis_client, 2), what="B to run the returned job")
            assert (await jobqueue.enqueue_product_embedding("p", triggered_by="v2")).rerun
            await redis_client.set(release_key("p", 1), 1)  # A finishes late
            await wait_for(lambda: _stale(a), what="A's late finish")
            assert await embeddings.get_job_counts() == counts(active=1)
            assert await _state("product-embedding:p") == "active"
            await redis_client.set(release_key("p", 2), 1)  # B finishes: the v2 rerun follows
            await wait_for(lambda: _runs_at_least(redis_client, 3), what="the rerun")
            await redis_client.set(release_key("p", 1), 1)
            await handle.result(timeout=10)
    assert [r["triggered_by"] for r in await runs(redis_client)] == ["v1", "v1", "v2"]
    assert await embeddings.get_job_counts() == counts(completed=1)
    minute = await embeddings.get_metrics(minutes=2)
    assert sum(minute["completed"]) == 2


async def _stale(worker):
    from jobqueue.worker._runner import STATE_KEY

    return worker.ctx[STATE_KEY].counters["stale"] >= 1


async def test_a_queue_refuses_the_ids_of_another_queue(redis_client):
    reminder = await jobqueue.enqueue_reminder_dispatch(
        "s1", "u1", "PUSH", {"title": "t", "body": "b"}, "2030-01-01T00:00:00+00:00"
    )
    for call in (
        embeddings.remove_job,
        embeddings.get_job,
        embeddings.retry_job,
        embeddings.get_job_state,
        embeddings.wait_for_result,
    ):
        with pytest.raises(JobNotFoundError, match="not a job of queue product-embedding"):
            await call(reminder.job_id)
    assert await reminder.status() == "delayed"


async def test_a_run_whose_outcome_could_not_be_recorded_is_returned_by_its_own_worker(redis_client, monkeypatch):
    # The outcome write gives up (Redis away longer than its retry window): the run's entry used
    # to stay "active" for ever, because a live worker never repaired its own entries.
    from redis.exceptions import ConnectionError as RedisConnectionError

    import jobqueue.worker._state as state_module
    from jobqueue.backend import _scripts

    real_finish = _scripts.FINISH
    failures = {"left": 3}

    class FlakyFinish:
        def __getattr__(self, name):
            return getattr(real_finish, name)

        async def __call__(self, redis, keys, args):
            if failures["left"] > 0:
                failures["left"] -= 1
                raise RedisConnectionError("Redis went away")
            return await real_finish(redis, keys, args)

    monkeypatch.setattr(_scripts, "FINISH", FlakyFinish())
    monkeypatch.setattr(state_module, "RECORD_RETRY_S", 0.15)
    await jobqueue.enqueue_product_embedding("orphan")
    async with RunningWorker(settings_for(worker_lease=0.5)):
        await wait_for(lambda: _completed(1), timeout=15, what="the job to run again and complete")
    assert [r["try"] for r in await runs(redis_client)] == [1, 2]
    assert await embeddings.get_job_counts() == counts(completed=1)


async def _completed(n):
    return (await embeddings.get_job_counts())["completed"] >= n


async def test_pages_of_waiting_jobs_partition_the_list_while_jobs_run(redis_client):
    await redis_client.set(behaviour_key("r0"), json.dumps({"block": True}))
    await redis_client.set(behaviour_key("r1"), json.dumps({"block": True}))
    await jobqueue.enqueue_product_embeddings(["r0", "r1"], priority=1)
    await jobqueue.enqueue_product_embeddings([f"p{i}" for i in range(6)], priority=5)
    async with RunningWorker(settings_for(concurrency=2)):
        await wait_for(lambda: _active(2), what="two jobs to run")
        pages = [await embeddings.get_jobs("waiting", i, i + 1) for i in (0, 2, 4)]
        await redis_client.set(release_key("r0"), 1)
        await redis_client.set(release_key("r1"), 1)
        await wait_for(lambda: _completed(8), what="everything to finish")
    ids = [j.job_id.split(":")[1] for page in pages for j in page]
    assert ids == [f"p{i}" for i in range(6)]


async def _active(n):
    return (await embeddings.get_job_counts())["active"] == n


async def test_a_job_killed_in_every_attempt_reports_the_runs_that_died(redis_client):
    await redis_client.set(behaviour_key("doomed"), json.dumps({"block": True}))
    await jobqueue.enqueue_product_embedding("doomed")
    for n in (1, 2):
        worker = WorkerProcess(SETTINGS, JOBQUEUE_TEST_ATTEMPTS="2").start()
        await worker.wait_for(lambda n=n: _runs_at_least(redis_client, n), timeout=20, what=f"run {n}")
        worker.kill()
        worker.stop()
    await redis_client.set(release_key("doomed"), 1)
    with WorkerProcess(SETTINGS, JOBQUEUE_TEST_ATTEMPTS="2") as survivor:
        await survivor.wait_for(lambda: _failed(1), timeout=20, what="the job to fail")
    info = await embeddings.get_job("product-embedding:doomed")
    assert info.error_type == "JobInterrupted"
    assert info.attempts_made == 2 and "all 2 attempt(s)" in info.error
    assert len(await runs(redis_client)) == 2


async def _failed(n):
    return (await embeddings.get_job_counts())["failed"] >= n


async def test_an_active_job_cannot_be_removed(redis_client):
    await redis_client.set(behaviour_key("busy"), json.dumps({"block": True}))
    await jobqueue.enqueue_product_embedding("busy")
    async with RunningWorker(settings_for()):
        await wait_for(lambda: _active(1), what="the job to start")
        with pytest.raises(JobStateError):
            await embeddings.remove_job("product-embedding:busy")
        await redis_client.set(release_key("busy"), 1)
        await wait_for(lambda: _completed(1), what="the job to finish")
    assert await embeddings.remove_job("product-embedding:busy")
