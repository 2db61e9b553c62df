"""Enqueue helpers: job ids, default priorities, dedup, bulk, re-enqueue after the end."""

import asyncio
import datetime as dt
import json

import pytest

import jobqueue
from jobqueue import product_embedding_queue as embeddings
from tests.support.workers import behaviour_key, counts, run_burst, runs, settings_for

CONTENT = {"title": "Birthday Reminder", "body": "Sarah's birthday is tomorrow!", "data": {"occasionId": "o-789"}}


async def test_each_helper_uses_the_seed_job_id_and_default_priority():
    future = (dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)).isoformat()
    handles = [
        await jobqueue.enqueue_product_embedding("product-123", triggered_by="product.created"),
        await jobqueue.enqueue_product_enrichment("product-123", prompt_version="v2", current_enrichment_version=0),
        await jobqueue.enqueue_taste_profile_embedding("profile-123", "user-456", recipient_id="recipient-789"),
        await jobqueue.enqueue_curated_collections(
            "home", "2025-12-21", filters={"is_featured": True, "min_price": 1000, "max_price": 10000}
        ),
        await jobqueue.enqueue_reminder_dispatch(
            "schedule-123", "user-456", "PUSH", CONTENT, future, occasion_id="occasion-789"
        ),
    ]
    expected = [
        ("product-embedding:product-123", "product-embedding", 2),
        ("product-enrichment:product-123", "product-enrichment", 3),
        ("taste-profile-embedding:profile-123", "taste-profile-embedding", 1),
        ("curated-collections:home:2025-12-21", "curated-collections", 4),
        ("reminder-dispatch:schedule-123", "reminder-dispatch", 1),
    ]
    for handle, (job_id, queue, priority) in zip(handles, expected, strict=True):
        assert (handle.job_id, handle.queue_name, handle.created) == (job_id, queue, True)
        info = await jobqueue.get_queue(queue).get_job(job_id)
        assert info.priority == priority
    assert await handles[0].status() == "waiting"
    assert await handles[4].status() == "delayed"
    reminder = await jobqueue.reminder_dispatch_queue.get_job("reminder-dispatch:schedule-123")
    assert reminder.payload["content"]["data"] == {"occasionId": "o-789"}
    assert abs((reminder.due_at - dt.datetime.fromisoformat(future)).total_seconds()) < 0.01


async def test_past_scheduled_for_runs_at_once():
    handle = await jobqueue.enqueue_reminder_dispatch("s-past", "u1", "EMAIL", CONTENT, "2020-01-01T09:00:00+00:00")
    assert await handle.status() == "waiting"


async def test_enqueue_same_product_twice_returns_existing_job():
    first = await jobqueue.enqueue_product_embedding("p1")
    second = await jobqueue.enqueue_product_embedding("p1", priority=1, triggered_by="again")
    assert first.created and not second.created and not second.rerun
    now = await embeddings.get_job_counts()
    assert now["waiting"] == 1
    info = await embeddings.get_job("product-embedding:p1")
    assert info.payload == {"product_id": "p1"} and info.priority == 2


async def test_fifty_concurrent_enqueues_of_one_id_make_exactly_one_job(redis_client):
    handles = await asyncio.gather(*(jobqueue.enqueue_product_embedding("hot") for _ in range(50)))
    assert sum(h.created for h in handles) == 1
    assert (await embeddings.get_job_counts())["waiting"] == 1
    assert await redis_client.zcard(embeddings.keys.queue) == 1


async def test_delayed_and_paused_jobs_are_deduplicated_too():
    assert (await jobqueue.enqueue_product_embedding("d1", delay=60)).created
    assert not (await jobqueue.enqueue_product_embedding("d1")).created
    await embeddings.pause()
    assert (await jobqueue.enqueue_product_embedding("w1")).created
    assert not (await jobqueue.enqueue_product_embedding("w1")).created
    assert await embeddings.get_job_counts() == counts(delayed=1, paused=1)


async def test_same_id_can_be_enqueued_again_after_completion(redis_client):
    await jobqueue.enqueue_product_embedding("again", triggered_by="first")
    await run_burst(settings_for())
    assert await embeddings.get_job_state("product-embedding:again") == "completed"
    handle = await jobqueue.enqueue_product_embedding("again", triggered_by="second")
    assert handle.created
    assert await embeddings.get_job_counts() == counts(waiting=1)
    await run_burst(settings_for())
    assert [r["triggered_by"] for r in await runs(redis_client)] == ["first", "second"]
    assert (await handle.result(timeout=5)).product_id == "again"


async def test_same_id_can_be_enqueued_again_after_failure(redis_client):
    await redis_client.set(behaviour_key("bad"), json.dumps({"permanent": True}))
    await jobqueue.enqueue_product_embedding("bad")
    await run_burst(settings_for())
    assert await embeddings.get_job_state("product-embedding:bad") == "failed"
    await redis_client.delete(behaviour_key("bad"))
    handle = await jobqueue.enqueue_product_embedding("bad")
    assert handle.created
    await run_burst(settings_for())
    assert (await handle.result(timeout=5)).status == "processed"
    assert (await embeddings.get_job_counts())["failed"] == 0


async def test_product_processing_enqueues_both_jobs():
    jobs = await jobqueue.enqueue_product_processing("product-123", triggered_by="product.created")
    assert jobs.enrichment_job.job_id == "product-enrichment:product-123"
    assert jobs.embedding_job.job_id == "product-embedding:product-123"
    assert jobs.enrichment_job.created and jobs.embedding_job.created
    assert await jobs.enrichment_job.status() == "waiting"
    again = await jobqueue.enqueue_product_processing("product-123")
    assert not again.enrichment_job.created and not again.embedding_job.created


async def test_daily_collections_enqueue_three_surfaces():
    handles = await jobqueue.schedule_daily_curated_collections("2025-12-21")
    assert [h.job_id for h in handles] == [
        "curated-collections:home:2025-12-21",
        "curated-collections:discovery:2025-12-21",
        "curated-collections:occasion:2025-12-21",
    ]
    today = dt.datetime.now(dt.UTC).date().isoformat()
    default = await jobqueue.schedule_daily_curated_collections()
    assert default[0].job_id == f"curated-collections:home:{today}"
    assert (await jobqueue.curated_collections_queue.get_job_counts())["waiting"] == 6


async def test_bulk_enqueue_writes_all_validated_jobs_and_dedups(redis_client):
    ids = [f"bulk-{i}" for i in range(2500)]
    handles = await jobqueue.enqueue_product_embeddings(ids, triggered_by="import")
    assert len(handles) == 2500 and all(h.created for h in handles)
    assert await redis_client.zcard(embeddings.keys.queue) == 2500
    again = await jobqueue.enqueue_many("product-embedding", [{"product_id": "bulk-7"}, {"product_id": "new"}])
    assert [h.created for h in again] == [False, True]
    assert (await embeddings.get_job_counts())["waiting"] == 2501
    assert await jobqueue.enqueue_many("product-embedding", []) == []


async def test_unknown_job_status_and_result():
    handle = await jobqueue.enqueue_product_embedding("gone")
    await embeddings.remove_job(handle.job_id)
    assert await handle.status() == "unknown"
    with pytest.raises(jobqueue.JobNotFoundError):
        await handle.result(timeout=1)
