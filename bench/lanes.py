"""The batch-lane side of ``python -m bench embeddings``: the same kind of products, enqueued with
``lane="batch"``, embedded through the loopback server's Batch API, and their cost against the
sync lane's for the same products.

Cost is the tokens the server's ``usage`` reported on each lane, priced by ``jobqueue.spend``'s
price table (``JOBQUEUE_LLM_PRICES``, the batch lane at its discount); the ratio compares cost
per product, so it does not depend on the sides' sizes.
"""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final

import jobqueue
from jobqueue.spend import price_table
from workers.providers.store import SqlStore

if TYPE_CHECKING:
    from bench.embeddings import Args
    from bench.server import Admin
    from workers.testing.fake_openai import FakeOpenAI

DEFAULT_BATCH_COMPLETION_S: Final = 60.0
# Products one batch submission may take at most, as the goal sets it (OpenAI allows 50,000).
PRODUCTS_PER_SUBMISSION_GOAL: Final = 10_000
# The lane's runner in the bench worker: look every second; submit once parking has paused 2 s.
LANE_ENV: Final = {
    "JOBQUEUE_BATCH_POLL_INTERVAL": "1",
    "JOBQUEUE_BATCH_GATHER_QUIET": "2",
}


@dataclass(slots=True)
class LaneResult:
    products: int
    wall_s: float  # from the bulk enqueue to the last job's end
    submissions: int
    batch_requests: int
    http_embedding_requests: int
    input_tokens: int
    cost_usd: float
    failed: int
    parked_twice: int  # jobs that ran more than twice (parked, then written)
    verified: int

    @property
    def cost_per_product(self) -> float:
        return self.cost_usd / self.products


def sync_cost(model: str, input_tokens: int) -> float:
    return price_table().cost_usd(model, "sync", input_tokens, 0)


async def run_batch_lane_side(
    args: Args,
    admin: Admin,
    fake: FakeOpenAI,
    url: str,
    tmp: Path,
) -> LaneResult:
    """Seed, enqueue on the batch lane, run one burst worker until every job has ended, verify
    (with the workload's own helpers: the same products, worker and checks as the sync sides)."""
    from bench import embeddings as workload

    progress = workload.progress
    await admin.clean()
    database_url = f"sqlite+aiosqlite:///{tmp / 'batch-lane.db'}"
    store = SqlStore(database_url)
    try:
        ids = workload.product_ids("lane", args.products)
        progress(f"batch lane: seeding {len(ids):,} products")
        texts = await workload.seed(store, ids)
        fake.batch_completion_s = args.batch_completion_s
        before, batches_before = fake.stats(), len(fake.batches())
        loop = asyncio.get_running_loop()
        started = loop.time()
        await jobqueue.enqueue_product_embeddings(ids, triggered_by="bench", lane="batch")
        progress(
            f"batch lane: one worker process, batch completion {args.batch_completion_s:g}s on the server, "
            f"concurrency {args.concurrency}"
        )
        env = workload.worker_env(args, url, database_url, fake.base_url, args.batch_size) | LANE_ENV
        await asyncio.to_thread(workload.run_worker, env)
        wall = loop.time() - started
        after = fake.stats()
        counts = await jobqueue.product_embedding_queue.get_job_counts()
        completed = await jobqueue.product_embedding_queue.get_jobs("completed", 0, args.products - 1)
        if len(completed) != args.products:
            raise SystemExit(f"bench-embeddings: batch lane: {len(completed)} of {args.products} completed: {counts}")
        submissions = len(fake.batches()) - batches_before
        allowed = math.ceil(args.products / PRODUCTS_PER_SUBMISSION_GOAL)
        if submissions > allowed:
            raise SystemExit(f"bench-embeddings: batch lane: {submissions} submissions for {args.products} products")
        tokens = after["batch_input_tokens"] - before["batch_input_tokens"]
        verified = await workload.verify(store, texts, fake, args.dims)
        return LaneResult(
            products=args.products,
            wall_s=wall,
            submissions=submissions,
            batch_requests=after["batch_requests"] - before["batch_requests"],
            http_embedding_requests=after["embedding_requests"] - before["embedding_requests"],
            input_tokens=tokens,
            cost_usd=price_table().cost_usd(workload.EMBEDDING_MODEL, "batch", tokens, 0),
            failed=counts["failed"],
            parked_twice=sum(1 for j in completed if j.attempts_made > 1),
            verified=verified,
        )
    finally:
        await store.aclose()
        await admin.clean()
