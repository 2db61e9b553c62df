"""At-least-once: a job whose worker is SIGKILLed runs again elsewhere, and counts stay exact."""

import json

import jobqueue
from jobqueue import product_embedding_queue as embeddings
from tests.support.waiting import WorkerProcess, wait_for
from tests.support.workers import behaviour_key, counts, release_key, run_burst, runs, settings_for

SETTINGS = "tests.support.workers.EmbeddingTestSettings"  # worker lease 1 s


async def _runs(redis_client, n):
    return len(await runs(redis_client)) >= n


async def _counts_are(expected):
    now = await embeddings.get_job_counts()
    return now if now == expected else None


async def test_job_of_a_killed_worker_runs_again_and_counts_are_repaired(redis_client):
    await redis_client.set(behaviour_key("victim"), json.dumps({"block": True}))
    handle = await jobqueue.enqueue_product_embedding("victim")
    await jobqueue.enqueue_product_embedding("bystander", priority=9)
    doomed = WorkerProcess(SETTINGS).start()
    try:
        await doomed.wait_for(lambda: _runs(redis_client, 1), timeout=15, what="the victim to start")
        assert (await embeddings.get_job_counts())["active"] == 1
        doomed.kill()
    finally:
        doomed.stop()
    # The killed worker left an "active" entry behind; it is stale, not active. Another worker
    # (started paused, so it repairs without running anything) returns it to the queue.
    await embeddings.pause()
    with WorkerProcess(SETTINGS) as survivor:
        await wait_for(
            lambda: _counts_are(counts(paused=2)),
            timeout=15,
            what="the stale active job to be repaired",
        )
        assert await handle.status() == "paused"
        await redis_client.set(release_key("victim"), 1)
        await embeddings.resume()
        await wait_for(
            lambda: _counts_are(counts(completed=2)),
            timeout=15,
            what="both jobs to complete",
        )
        recorded = await runs(redis_client)
        assert len(recorded) == 3, recorded
        first, second, third = recorded
        assert (first["product_id"], first["try"], first["pid"]) == ("victim", 1, doomed.pid)
        assert (second["product_id"], second["try"], second["pid"]) == ("victim", 2, survivor.pid)
        assert third["product_id"] == "bystander"
    info = await embeddings.get_job(handle.job_id)
    assert info.state == "completed" and info.attempts_made == 2


async def test_a_job_that_keeps_killing_its_worker_fails_after_its_attempts(redis_client):
    # Three runs were begun and none reported back (as if each worker died): the next run fails
    # the job instead of starting it a fourth time.
    await jobqueue.enqueue_product_embedding("poison")
    await redis_client.hset("jq:product-embedding:info:product-embedding:poison", "attempts", 3)
    await run_burst(settings_for(attempts=3))
    assert await runs(redis_client) == []
    info = await embeddings.get_job("product-embedding:poison")
    assert info.state == "failed" and info.error_type == "JobInterrupted"
    assert "stopped during all 3 attempt(s)" in info.error
    assert info.attempts_made == 3  # the three runs that died, not one more


async def test_a_job_interrupted_by_a_graceful_stop_goes_back_to_waiting_at_once(redis_client):
    await redis_client.set(behaviour_key("long"), json.dumps({"block": True}))
    handle = await jobqueue.enqueue_product_embedding("long")
    with WorkerProcess(SETTINGS) as worker:
        await worker.wait_for(lambda: _runs(redis_client, 1), timeout=15, what="the job to start")
        worker.stop()  # SIGTERM: arq cancels the run and keeps the job for another try
        assert worker.proc.returncode == 0
    # No lease to wait out: the stopped worker recorded the interruption and left the job waiting.
    assert await embeddings.get_job_counts() == counts(waiting=1)
    await redis_client.set(release_key("long"), 1)
    await run_burst(settings_for())
    # A hand-back is not an attempt: the run after it is attempt 1 again.
    assert [r["try"] for r in await runs(redis_client)] == [1, 1]
    assert (await handle.result(timeout=5)).status == "processed"
    assert (await embeddings.get_job("product-embedding:long")).attempts_made == 1
