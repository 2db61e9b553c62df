"""The worker ``python -m bench capacity`` starts: ``arq bench.capacity_worker.CapacitySettings``.

It runs the queue named by ``BENCH_CAPACITY_QUEUE`` with that queue's own options (concurrency,
attempts, retention) and a handler that does no work but returns the queue's real result, so what
Redis does per job is what it does for that queue in production, minus the job's own work.
"""

from __future__ import annotations

import datetime as dt
import os
from typing import Any

from jobqueue import build_worker_settings, queue_options
from jobqueue import results as r
from jobqueue.constants import QueueName

QUEUE_ENV = "BENCH_CAPACITY_QUEUE"
HASH = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"


def result_for(queue: str, payload: Any) -> Any:
    """The result a real run of ``queue``'s job returns, made from its payload."""
    if queue == QueueName.PRODUCT_EMBEDDING:
        return r.ProductEmbeddingJobResult(
            status="processed", product_id=payload.product_id, text_hash=HASH, model="text-embedding-3-small", dims=1536
        )
    if queue == QueueName.PRODUCT_ENRICHMENT:
        return r.ProductEnrichmentJobResult(
            status="processed", product_id=payload.product_id, enrichment_version=3, prompt_version="v3"
        )
    if queue == QueueName.TASTE_PROFILE_EMBEDDING:
        return r.TasteProfileEmbeddingJobResult(
            status="processed", taste_profile_id=payload.taste_profile_id, model="text-embedding-3-small", dims=1536
        )
    if queue == QueueName.CURATED_COLLECTIONS:
        ids = [f"col_{payload.surface}_{payload.date:%Y%m%d}_{i}" for i in range(payload.collections_count)]
        return r.CuratedCollectionsJobResult(
            status="processed", surface=payload.surface, date=payload.date, collection_ids=ids
        )
    return r.ReminderDispatchJobResult(
        status="processed", schedule_id=payload.schedule_id, channel=payload.channel, sent_at=dt.datetime.now(dt.UTC)
    )


def __getattr__(name: str) -> Any:
    # Built when arq asks for it, from the environment of this process (never at import).
    if name != "CapacitySettings":
        raise AttributeError(name)
    queue = os.environ[QUEUE_ENV]

    async def handler(ctx: dict[str, Any], payload: Any) -> Any:
        return result_for(queue, payload)

    return build_worker_settings(queue, handler, name="CapacitySettings", options=queue_options(queue))
