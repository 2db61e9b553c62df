"""Completed and failed jobs are kept by count and age; memory stays bounded."""

import json

import jobqueue
from jobqueue import product_embedding_queue as embeddings
from tests.support.workers import behaviour_key, run_burst, settings_for


async def _done_records(redis_client):
    return [k async for k in redis_client.scan_iter(match=embeddings.keys.base + "done:*")]


async def test_completed_jobs_are_trimmed_to_the_configured_count(redis_client):
    await jobqueue.enqueue_product_embeddings([f"p{i}" for i in range(300)])
    await run_burst(settings_for(concurrency=10, keep_completed=10))
    counts = await embeddings.get_job_counts()
    assert counts["completed"] == 10 and counts["waiting"] == 0
    assert len(await _done_records(redis_client)) == 10
    newest = [j.job_id for j in await embeddings.get_jobs("completed")]
    assert len(newest) == 10 and "product-embedding:p0" not in newest


async def test_failed_jobs_are_trimmed_to_the_configured_count(redis_client):
    for i in range(30):
        await redis_client.set(behaviour_key(f"f{i}"), json.dumps({"permanent": True}))
    await jobqueue.enqueue_product_embeddings([f"f{i}" for i in range(30)])
    await run_burst(settings_for(concurrency=5, keep_failed=7))
    assert (await embeddings.get_job_counts())["failed"] == 7
    assert len(await _done_records(redis_client)) == 7


async def test_records_older_than_the_age_limit_are_removed_on_the_next_finish(redis_client):
    await jobqueue.enqueue_product_embeddings(["old-1", "old-2"])
    await run_burst(settings_for(keep_completed_age=3600))
    assert (await embeddings.get_job_counts())["completed"] == 2
    # Make the two records two hours old, as if they had finished then.
    for job_id in ("product-embedding:old-1", "product-embedding:old-2"):
        score = await redis_client.zscore(embeddings.keys.completed, job_id)
        await redis_client.zadd(embeddings.keys.completed, {job_id: score - 7_200_000})
    await jobqueue.enqueue_product_embedding("fresh")
    await run_burst(settings_for(keep_completed_age=3600))
    assert [j.job_id for j in await embeddings.get_jobs("completed")] == ["product-embedding:fresh"]
    assert len(await _done_records(redis_client)) == 1


async def test_keep_zero_stores_no_records(redis_client):
    handle = await jobqueue.enqueue_product_embedding("ephemeral")
    await run_burst(settings_for(keep_completed=0))
    assert (await embeddings.get_job_counts())["completed"] == 0
    assert await handle.status() == "unknown"
    assert await _done_records(redis_client) == []
