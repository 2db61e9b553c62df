"""The five queues of the Core API and their job ids."""

from __future__ import annotations

from jobqueue.constants import DEFAULT_PRIORITIES, QueueName
from jobqueue.coreapi import payloads as p
from jobqueue.coreapi import results as r
from jobqueue.errors import InvalidJobError
from jobqueue.queue.queue import Queue

product_embedding_queue = Queue(
    QueueName.PRODUCT_EMBEDDING.value,
    function="product_embedding",
    payload_model=p.ProductEmbeddingJobPayload,
    result_model=r.ProductEmbeddingJobResult,
    default_priority=DEFAULT_PRIORITIES[QueueName.PRODUCT_EMBEDDING],
    job_id=lambda m: f"product-embedding:{m.product_id}",
)
product_enrichment_queue = Queue(
    QueueName.PRODUCT_ENRICHMENT.value,
    function="product_enrichment",
    payload_model=p.ProductEnrichmentJobPayload,
    result_model=r.ProductEnrichmentJobResult,
    default_priority=DEFAULT_PRIORITIES[QueueName.PRODUCT_ENRICHMENT],
    job_id=lambda m: f"product-enrichment:{m.product_id}",
)
taste_profile_embedding_queue = Queue(
    QueueName.TASTE_PROFILE_EMBEDDING.value,
    function="taste_profile_embedding",
    payload_model=p.TasteProfileEmbeddingJobPayload,
    result_model=r.TasteProfileEmbeddingJobResult,
    default_priority=DEFAULT_PRIORITIES[QueueName.TASTE_PROFILE_EMBEDDING],
    job_id=lambda m: f"taste-profile-embedding:{m.taste_profile_id}",
)
curated_collections_queue = Queue(
    QueueName.CURATED_COLLECTIONS.value,
    function="curated_collections",
    payload_model=p.CuratedCollectionsJobPayload,
    result_model=r.CuratedCollectionsJobResult,
    default_priority=DEFAULT_PRIORITIES[QueueName.CURATED_COLLECTIONS],
    job_id=lambda m: f"curated-collections:{m.surface}:{m.date.isoformat()}",
)
reminder_dispatch_queue = Queue(
    QueueName.REMINDER_DISPATCH.value,
    function="reminder_dispatch",
    payload_model=p.ReminderDispatchJobPayload,
    result_model=r.ReminderDispatchJobResult,
    default_priority=DEFAULT_PRIORITIES[QueueName.REMINDER_DISPATCH],
    job_id=lambda m: f"reminder-dispatch:{m.schedule_id}",
)

QUEUES: dict[str, Queue] = {
    q.name: q
    for q in (
        product_embedding_queue,
        product_enrichment_queue,
        taste_profile_embedding_queue,
        curated_collections_queue,
        reminder_dispatch_queue,
    )
}


def get_queue(name: str | Queue) -> Queue:
    """The queue object for ``name`` (a ``QueueName`` value such as ``"product-embedding"``)."""
    if isinstance(name, Queue):
        return name
    try:
        return QUEUES[str(name)]
    except KeyError:
        raise InvalidJobError(f"unknown queue {name!r}; queues are {', '.join(QUEUES)}") from None
