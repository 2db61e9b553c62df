"""The documented path of the five queue objects, kept for existing imports; they live in
``jobqueue.coreapi.queues``."""

from jobqueue.coreapi.queues import (
    QUEUES,
    curated_collections_queue,
    get_queue,
    product_embedding_queue,
    product_enrichment_queue,
    reminder_dispatch_queue,
    taste_profile_embedding_queue,
)

__all__ = [
    "QUEUES",
    "curated_collections_queue",
    "get_queue",
    "product_embedding_queue",
    "product_enrichment_queue",
    "reminder_dispatch_queue",
    "taste_profile_embedding_queue",
]
