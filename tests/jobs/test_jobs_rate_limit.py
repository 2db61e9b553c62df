"""The provider rate limit holds across worker processes: it lives in Redis, not in a process."""

import asyncio

import jobqueue
from jobqueue.backend.connection import get_redis
from tests.support.waiting import WorkerProcess, wait_for

LIMIT, PERIOD = 3, 1.0
LIMITER_KEY = "jq:ratelimit:openai:embeddings"


async def _completed(n):
    return (await jobqueue.product_embedding_queue.get_job_counts())["completed"] >= n


async def _workers(n):
    return await get_redis().zcard(jobqueue.product_embedding_queue.keys.workers) >= n


async def _read_grants(grants: dict[bytes, float]) -> None:
    for member, score in await get_redis().zrange(LIMITER_KEY, 0, -1, withscores=True):
        grants[member] = score / 1_000_000


async def _record_grants(grants: dict[bytes, float]) -> None:
    """Collect every slot the limiter grants (member -> Redis time); each stays a period in its zset."""
    while True:
        await _read_grants(grants)
        await asyncio.sleep(0.02)


async def test_embedding_rate_limit_holds_across_two_worker_processes(store, fake_openai, core_env):
    for i in range(9):
        await store.upsert_product(f"p{i}", name=f"Product {i}", price=1000)
    limits = {
        "EMBEDDING_RATE_LIMIT_PER_MINUTE": str(LIMIT),
        "LLM_RATE_LIMIT_PERIOD": str(PERIOD),
        "JOBQUEUE_PRODUCT_EMBEDDING_CONCURRENCY": "5",
        # One request per job (batching off), so each job takes its own slot of the limit.
        "JOBQUEUE_PRODUCT_EMBEDDING_BATCH_SIZE": "1",
        # Two interpreters starting on two cores can stall a loop for a second: keep the lease
        # (1 s in the fast test options) from declaring a busy worker dead here.
        "JOBQUEUE_PRODUCT_EMBEDDING_WORKER_LEASE": "15",
    }
    grants: dict[bytes, float] = {}
    # Each process has its own key, so the server can tell who called.
    with (
        WorkerProcess("workers.EmbeddingSettings", LLM_API_KEY="sk-a", **limits) as a,
        WorkerProcess("workers.EmbeddingSettings", LLM_API_KEY="sk-b", **limits),
    ):
        await wait_for(lambda: _workers(2), timeout=20, what="both workers to start")
        recorder = asyncio.create_task(_record_grants(grants))
        try:
            await jobqueue.enqueue_product_embeddings([f"p{i}" for i in range(9)])
            await a.wait_for(lambda: _completed(9), timeout=30, what="all nine embeddings")
            await _read_grants(grants)  # the last grants are still in the window
        finally:
            recorder.cancel()
            await asyncio.gather(recorder, return_exceptions=True)
    requests = fake_openai.requests_to("/v1/embeddings")
    assert len(requests) == 9
    assert {r.headers["authorization"] for r in requests} == {"Bearer sk-a", "Bearer sk-b"}
    # The limiter's own record, in Redis time: never more than LIMIT slots in any PERIOD.
    times = sorted(grants.values())
    assert len(times) == 9
    for t in times:
        assert sum(t <= u < t + PERIOD for u in times) <= LIMIT
    assert times[-1] - times[0] >= 2 * PERIOD
