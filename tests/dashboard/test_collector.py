"""The scrape-time collector: depths equal get_job_counts(), paused flags, live workers, Redis memory."""

import json

import jobqueue
from jobqueue import QUEUES
from jobqueue import product_embedding_queue as embeddings
from jobqueue.collector import render_queue_metrics
from jobqueue.settings import get_settings
from tests.support.scrape import samples, value
from tests.support.waiting import free_port, wait_for
from tests.support.workers import RunningWorker, behaviour_key, release_key, run_burst, settings_for


async def test_collector_depths_equal_get_job_counts(redis_client):
    await redis_client.set(behaviour_key("bad"), json.dumps({"permanent": True}))
    await jobqueue.enqueue_product_embeddings(["done", "bad"])
    await run_burst(settings_for())
    await jobqueue.enqueue_product_embeddings(["w1", "w2", "w3"])
    await jobqueue.enqueue_product_embedding("later", delay=3600)
    await jobqueue.enqueue_taste_profile_embedding("tp", "user")
    await jobqueue.curated_collections_queue.pause()
    await jobqueue.enqueue_curated_collections("home", "2025-12-21")

    page = samples((await render_queue_metrics()).decode())

    for queue in QUEUES.values():
        for state, count in (await queue.get_job_counts()).items():
            assert value(page, "jobqueue_queue_jobs", queue=queue.name, state=state) == count, (queue.name, state)
        assert value(page, "jobqueue_queue_paused", queue=queue.name) == int(await queue.is_paused())
    assert value(page, "jobqueue_queue_jobs", queue="product-embedding", state="waiting") == 3
    assert value(page, "jobqueue_queue_jobs", queue="curated-collections", state="paused") == 1
    assert value(page, "jobqueue_redis_up") == 1
    assert value(page, "jobqueue_redis_used_memory_bytes") > 0


async def test_collector_counts_live_workers_and_their_running_jobs(redis_client):
    await redis_client.set(behaviour_key("slow"), json.dumps({"block": True}))
    await jobqueue.enqueue_product_embedding("slow")
    async with RunningWorker(settings_for()):

        async def running():
            page = samples((await render_queue_metrics()).decode())
            return value(page, "jobqueue_queue_jobs_running", queue="product-embedding") == 1 and page

        page = await wait_for(running, what="the running job to show")
        assert value(page, "jobqueue_workers_alive", queue="product-embedding") == 1
        assert value(page, "jobqueue_workers_alive", queue="reminder-dispatch") == 0
        assert len(await embeddings.get_workers()) == 1
        await redis_client.set(release_key("slow"), 1)


async def test_collector_reports_redis_down_as_a_metric(monkeypatch):
    monkeypatch.setenv("REDIS_URL", f"redis://127.0.0.1:{free_port()}")
    get_settings.cache_clear()
    page = samples((await render_queue_metrics()).decode())
    assert value(page, "jobqueue_redis_up") == 0
    assert not any(name == "jobqueue_queue_jobs" for name, _ in page)
