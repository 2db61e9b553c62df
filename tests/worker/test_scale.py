"""What must hold at scale: any number of workers run at once, and no call blocks Redis for long."""

import redis

import jobqueue
from jobqueue import product_embedding_queue as embeddings
from jobqueue.settings import get_settings
from tests.support.private_valkey import private_valkey
from tests.support.waiting import WorkerProcess
from tests.support.workers import behaviour_key, release_key

SETTINGS = "tests.support.workers.EmbeddingTestSettings"
SLOW_US = 100_000  # blocking Redis: 100 ms in one command (the old single script: 356 ms clean, 592 ms drain)


async def test_three_workers_of_concurrency_fifty_run_150_jobs_at_once(redis_client):
    # Running jobs used to stay at the head of arq's queue zset, and arq reads only the first
    # queue_read_limit ids: about 100 jobs ran at once however many workers there were.
    ids = [f"p{i}" for i in range(180)]
    pipe = redis_client.pipeline()
    for pid in ids:
        pipe.set(behaviour_key(pid), '{"block": true}')
    await pipe.execute()
    await jobqueue.enqueue_product_embeddings(ids)
    workers = [WorkerProcess(SETTINGS, JOBQUEUE_TEST_CONCURRENCY="50").start() for _ in range(3)]
    try:
        await workers[0].wait_for(lambda: _active(150), timeout=60, what="150 jobs running together")
        assert (await embeddings.get_job_counts())["waiting"] == 30
        pipe = redis_client.pipeline()
        for pid in ids:
            pipe.set(release_key(pid), 1)
        await pipe.execute()
        await workers[0].wait_for(lambda: _completed(180), timeout=60, what="all jobs to complete")
    finally:
        for worker in workers:
            worker.stop()


async def _active(n):
    return (await embeddings.get_job_counts())["active"] >= n


async def _completed(n):
    return (await embeddings.get_job_counts())["completed"] >= n


async def test_clean_and_drain_of_a_large_queue_never_block_redis(monkeypatch):
    # One unbounded script used to look at every waiting job: clean(1h, limit=10) over 200,000
    # young jobs blocked Redis 2.5 s and removed nothing. Now each call looks at a bounded batch.
    n = 60_000
    with private_valkey(slowlog_log_slower_than=SLOW_US) as server:
        monkeypatch.setenv("REDIS_URL", server.connection_url)
        get_settings.cache_clear()
        await jobqueue.enqueue_product_embeddings([f"p{i}" for i in range(n)])
        admin = redis.Redis.from_url(server.connection_url)
        admin.slowlog_reset()
        assert await embeddings.clean(3600, 10, "waiting") == []  # all younger than an hour
        oldest = await embeddings.clean(0, 10, "waiting")
        assert oldest == [f"product-embedding:p{i}" for i in range(10)]
        assert await embeddings.drain() == n - 10
        assert await embeddings.get_job_counts() == {
            "waiting": 0,
            "active": 0,
            "completed": 0,
            "failed": 0,
            "delayed": 0,
            "paused": 0,
        }
        slow = [entry for entry in admin.slowlog_get(128) if entry["duration"] >= SLOW_US]
        admin.close()
        await jobqueue.close_queues()
    assert slow == [], f"commands that blocked Redis for {SLOW_US / 1000:g} ms or more: {slow}"
