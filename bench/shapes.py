"""Each queue's real job shape, for ``python -m bench capacity``: payloads with ids, hashes and text
of the Core API's sizes, and the result a real run returns."""

from __future__ import annotations

import datetime as dt
from typing import Any

from jobqueue.constants import QueueName
from jobqueue.coreapi import results as r

HASH = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"


def payload(queue: str, i: int) -> dict[str, Any]:
    """Job ``i`` of ``queue``, shaped like the Core API's: ids, hashes and text of real sizes."""
    if queue == QueueName.PRODUCT_EMBEDDING:
        return {"product_id": f"prod_{i:020d}", "triggered_by": "product.updated", "previous_text_hash": "a" * 64}
    if queue == QueueName.PRODUCT_ENRICHMENT:
        return {
            "product_id": f"prod_{i:020d}",
            "triggered_by": "product.created",
            "prompt_version": "enrich-v3",
            "current_enrichment_version": 2,
        }
    if queue == QueueName.TASTE_PROFILE_EMBEDDING:
        return {
            "taste_profile_id": f"tp_{i:020d}",
            "user_id": f"user_{i:020d}",
            "triggered_by": "taste_profile.updated",
            "recipient_id": f"rcp_{i:020d}",
        }
    if queue == QueueName.CURATED_COLLECTIONS:
        return {
            "surface": ("home", "discovery", "occasion")[i % 3],
            "date": (dt.date(2020, 1, 1) + dt.timedelta(days=i // 3)).isoformat(),
            "collections_count": 6,
            "products_per_collection": 8,
            "filters": {"is_featured": True, "min_price": 1000, "max_price": 25000},
            "triggered_by": "scheduled",
        }
    return {
        "schedule_id": f"sched_{i:020d}",
        "user_id": f"user_{i:020d}",
        "channel": "PUSH",
        "content": {
            "title": "Sam's birthday is on Friday",
            "body": "Three gift ideas picked for Sam from the things they saved this month. " * 3,
            "data": {"occasion_id": f"occ_{i:020d}", "deep_link": f"app://occasions/occ_{i:020d}"},
        },
        "scheduled_for": "2020-01-01T09:00:00+00:00",  # past: due at once
        "occasion_id": f"occ_{i:020d}",
    }


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
