"""jobqueue: background jobs for the Core API on arq and Redis.

Enqueue from a FastAPI handler with the ``enqueue_*`` helpers; run workers with
``arq workers.EmbeddingSettings`` (and its siblings); operate queues through the queue objects.
"""

from jobqueue.backend.connection import check_queues_health, close_queues
from jobqueue.batches import get_batches
from jobqueue.constants import QUEUE_NAMES, QueueName
from jobqueue.coreapi.enqueue import (
    ProductProcessingJobs,
    enqueue_curated_collections,
    enqueue_many,
    enqueue_product_embedding,
    enqueue_product_embeddings,
    enqueue_product_enrichment,
    enqueue_product_enrichments,
    enqueue_product_processing,
    enqueue_reminder_dispatch,
    enqueue_taste_profile_embedding,
    enqueue_taste_profile_embeddings,
    schedule_daily_curated_collections,
)
from jobqueue.coreapi.payloads import (
    CollectionFilters,
    CuratedCollectionsJobPayload,
    ProductEmbeddingJobPayload,
    ProductEnrichmentJobPayload,
    ReminderContent,
    ReminderDispatchJobPayload,
    TasteProfileEmbeddingJobPayload,
)
from jobqueue.coreapi.queues import (
    QUEUES,
    curated_collections_queue,
    get_queue,
    product_embedding_queue,
    product_enrichment_queue,
    reminder_dispatch_queue,
    taste_profile_embedding_queue,
)
from jobqueue.coreapi.results import (
    CuratedCollectionsJobResult,
    LLMUsage,
    ProductEmbeddingJobResult,
    ProductEnrichmentJobResult,
    ReminderDispatchJobResult,
    TasteProfileEmbeddingJobResult,
)
from jobqueue.errors import (
    ConfigurationError,
    EntityNotFoundError,
    InvalidJobError,
    JobError,
    JobFailedError,
    JobNotFoundError,
    JobParked,
    JobQueueError,
    JobResultTimeoutError,
    JobStateError,
    NotReplicatedError,
    PermanentJobError,
    RedisCommandError,
    RedisUnavailableError,
    RetryableJobError,
)
from jobqueue.queue.events import JobEvent
from jobqueue.queue.job import JobHandle, JobInfo, JobState
from jobqueue.queue.queue import Queue
from jobqueue.schedules.schedules import Schedule, get_schedules, remove_schedule, upsert_schedule
from jobqueue.settings import Settings, get_settings
from jobqueue.worker import build_worker_settings
from jobqueue.worker.backoff import exponential_backoff
from jobqueue.worker.options import QueueOptions, queue_options
from jobqueue.worker.progress import add_job_log, update_progress

__all__ = [
    "QUEUES",
    "QUEUE_NAMES",
    "CollectionFilters",
    "ConfigurationError",
    "CuratedCollectionsJobPayload",
    "CuratedCollectionsJobResult",
    "EntityNotFoundError",
    "InvalidJobError",
    "JobError",
    "JobEvent",
    "JobFailedError",
    "JobHandle",
    "JobInfo",
    "JobNotFoundError",
    "JobParked",
    "JobQueueError",
    "JobResultTimeoutError",
    "JobState",
    "JobStateError",
    "LLMUsage",
    "NotReplicatedError",
    "PermanentJobError",
    "ProductEmbeddingJobPayload",
    "ProductEmbeddingJobResult",
    "ProductEnrichmentJobPayload",
    "ProductEnrichmentJobResult",
    "ProductProcessingJobs",
    "Queue",
    "QueueName",
    "QueueOptions",
    "RedisCommandError",
    "RedisUnavailableError",
    "ReminderContent",
    "ReminderDispatchJobPayload",
    "ReminderDispatchJobResult",
    "RetryableJobError",
    "Schedule",
    "Settings",
    "TasteProfileEmbeddingJobPayload",
    "TasteProfileEmbeddingJobResult",
    "add_job_log",
    "build_worker_settings",
    "check_queues_health",
    "close_queues",
    "curated_collections_queue",
    "enqueue_curated_collections",
    "enqueue_many",
    "enqueue_product_embedding",
    "enqueue_product_embeddings",
    "enqueue_product_enrichment",
    "enqueue_product_enrichments",
    "enqueue_product_processing",
    "enqueue_reminder_dispatch",
    "enqueue_taste_profile_embedding",
    "enqueue_taste_profile_embeddings",
    "exponential_backoff",
    "get_batches",
    "get_queue",
    "get_schedules",
    "get_settings",
    "product_embedding_queue",
    "product_enrichment_queue",
    "queue_options",
    "reminder_dispatch_queue",
    "remove_schedule",
    "schedule_daily_curated_collections",
    "taste_profile_embedding_queue",
    "update_progress",
    "upsert_schedule",
]
