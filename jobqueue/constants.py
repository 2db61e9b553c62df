"""Names and default numbers, in one place."""

from __future__ import annotations

from enum import StrEnum
from typing import Final


class QueueName(StrEnum):
    """The five queues; the values are the names used in Redis keys and job handles."""

    PRODUCT_EMBEDDING = "product-embedding"
    PRODUCT_ENRICHMENT = "product-enrichment"
    TASTE_PROFILE_EMBEDDING = "taste-profile-embedding"
    CURATED_COLLECTIONS = "curated-collections"
    REMINDER_DISPATCH = "reminder-dispatch"


QUEUE_NAMES: Final = {q.name: q.value for q in QueueName}

# Redis keys: everything of ours lives under KEY_PREFIX; arq's own keys keep arq's prefixes.
KEY_PREFIX: Final = "jq"
ARQ_JOB_PREFIX: Final = "arq:job:"

# Priorities: 1 is the most urgent. Ready jobs are scored seq - (11 - p) * K + p / 16 in arq's
# queue zset, far below any timestamp; delayed jobs are scored at their due time + p / 16.
MIN_PRIORITY: Final = 1
MAX_PRIORITY: Final = 10
PRIORITY_BAND: Final = 100_000_000_000
# A running job is parked in the queue zset at PARKED_SCORE + its lease's expiry (ms): far beyond
# any due time, so arq never picks it, and expired leases are one range query.
PARKED_SCORE: Final = 1_000_000_000_000_000

DEFAULT_PRIORITIES: Final = {
    QueueName.PRODUCT_EMBEDDING: 2,
    QueueName.PRODUCT_ENRICHMENT: 3,
    QueueName.TASTE_PROFILE_EMBEDDING: 1,
    QueueName.CURATED_COLLECTIONS: 4,
    QueueName.REMINDER_DISPATCH: 1,
}

# Worker defaults; each can be overridden per queue (see jobqueue.worker.options.QueueOptions).
DEFAULT_CONCURRENCY: Final = 10
DEFAULT_JOB_TIMEOUT_S: Final = 300.0
DEFAULT_ATTEMPTS: Final = 3
DEFAULT_BACKOFF_BASE_S: Final = 2.0
DEFAULT_BACKOFF_MAX_S: Final = 600.0
DEFAULT_BACKOFF_JITTER: Final = 0.1
DEFAULT_KEEP_COMPLETED: Final = 1000
DEFAULT_KEEP_COMPLETED_AGE_S: Final = 24 * 3600.0
DEFAULT_KEEP_FAILED: Final = 5000
DEFAULT_KEEP_FAILED_AGE_S: Final = 7 * 24 * 3600.0
DEFAULT_POLL_DELAY_S: Final = 0.02
DEFAULT_TICK_INTERVAL_S: Final = 1.0
DEFAULT_WORKER_LEASE_S: Final = 30.0
DEFAULT_CANCEL_GRACE_S: Final = 5.0
# An on_completed/on_failed hook that runs longer than this is cancelled (and logged).
HOOK_TIMEOUT_S: Final = 5.0
PROMOTE_BATCH: Final = 1000
# Runs whose lease expired, returned to the queue per tick (the rest on the next ticks).
RETURN_BATCH: Final = 100
# Per-minute completed/failed/retried history kept in Redis, per queue.
METRICS_KEEP_MINUTES: Final = 24 * 60

# How long a worker keeps trying to record a run's start or outcome while Redis is away or busy.
RECORD_RETRY_S: Final = 20.0
# Clean and drain work in batches of this many jobs per script call (a few ms of Redis each).
CLEAN_BATCH: Final = 500

# Enqueue side
BULK_CHUNK: Final = 1000
# A job's payload as JSON, at most: jobs carry ids and small parameters, not documents.
MAX_PAYLOAD_BYTES: Final = 256 * 1024
# Ids become part of Redis keys, log lines and SCAN patterns: 1-200 characters, none of them a
# blank, a control character or a glob character.
MAX_ID_LENGTH: Final = 200
ID_FORBIDDEN_CHARACTERS: Final = "*?[]"
RESULT_POLL_MIN_S: Final = 0.005
RESULT_POLL_MAX_S: Final = 0.2
DEFAULT_REDIS_TIMEOUT_S: Final = 5.0
# JOBQUEUE_ENQUEUE_REPLICAS_TIMEOUT: how long an enqueue waits for its replicas (WAIT) by default.
DEFAULT_ENQUEUE_REPLICAS_TIMEOUT_S: Final = 1.0
# How long a starting worker waits for Redis to answer before it exits.
DEFAULT_REDIS_STARTUP_WAIT_S: Final = 30.0

# Events (jobqueue.queue.events): each queue's stream keeps about this many (JOBQUEUE_EVENTS_MAXLEN).
DEFAULT_EVENTS_MAXLEN: Final = 10_000
# A completed event carries the job's result as JSON when it is at most this long; an error or a
# log line is cut to EVENT_TEXT_MAX characters.
EVENT_RESULT_MAX: Final = 512
EVENT_TEXT_MAX: Final = 1000
# One XREAD of events() or of result()'s listener blocks at most this long before it asks again.
EVENTS_BLOCK_S: Final = 5.0
EVENTS_READ_COUNT: Final = 500
# result() waits on the events stream; it also looks at the job at least this often, in case an
# event was missed (the stream off, trimmed, or Redis briefly away).
RESULT_RECHECK_S: Final = 1.0
# Progress and logs from a handler (jobqueue.worker.progress): a progress object's JSON is at most this
# long; each job keeps its last LOG_LINES_KEPT log lines, each cut to LOG_LINE_MAX characters.
PROGRESS_MAX_BYTES: Final = 4096
LOG_LINES_KEPT: Final = 1000
LOG_LINE_MAX: Final = 2000
# cancel_job of a running job: its worker looks for cancel flags of its runs this often, and a
# flag no run took (its job returned to the queue, then removed) expires after CANCEL_FLAG_TTL_S.
CANCEL_CHECK_S: Final = 0.5
CANCEL_FLAG_TTL_S: Final = 24 * 3600.0
# How often cancel_job reads a job again that changed between its read and its script.
CANCEL_TRIES: Final = 5

# Worker metrics (jobqueue.metrics) listen here unless JOBQUEUE_METRICS_ADDR says otherwise.
DEFAULT_METRICS_ADDR: Final = "127.0.0.1"

# Recurring schedules (jobqueue.schedules), fired by a task in every worker of their queue.
# A worker's scheduler sleeps at most this long, so new and changed schedules are seen promptly.
SCHEDULER_MAX_WAIT_S: Final = 1.0
# A queue's schedules count as tended while some worker's scheduler has run within this time: slots
# a tended queue falls behind on are fired one by one; slots missed while none ran are fired once.
SCHEDULER_ALIVE_S: Final = 10.0
# A scheduler renews its queue's tended mark this often (so it is at most this plus one pass,
# SCHEDULER_MAX_WAIT_S, old), not on every pass: an idle worker's passes write nothing in between.
SCHEDULER_ALIVE_RENEW_S: Final = 5.0
# Most slots one scheduler pass fires before it yields to the worker's other tasks.
SCHEDULER_BATCH: Final = 100
# The shortest every= of a schedule: each slot is a job, and the scheduler's waits are counted in
# SCHEDULER_MAX_WAIT_S; sub-second slots would be a flood of jobs, not a schedule.
SCHEDULE_MIN_EVERY_S: Final = 1.0

# Provider-call lanes of the LLM jobs: "sync" calls the provider during the run, "batch" gathers
# the calls into Batch API submissions (half price, answered within 24 h; workers.providers.batchlane).
LANES: Final = ("sync", "batch")
