"""Per-queue worker options: defaults, then ``JOBQUEUE_<QUEUE>_<OPTION>`` variables, then code.

For example ``JOBQUEUE_PRODUCT_EMBEDDING_ATTEMPTS=5`` or ``JOBQUEUE_REMINDER_DISPATCH_CONCURRENCY=20``.
Durations are seconds.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from jobqueue import constants as c
from jobqueue._env import describe
from jobqueue._envnames import queue_prefix
from jobqueue.errors import ConfigurationError


class QueueOptions(BaseModel):
    """How the workers of one queue run its jobs and how long they keep finished ones."""

    model_config = {"frozen": True}

    concurrency: int = Field(c.DEFAULT_CONCURRENCY, ge=1)
    timeout: float = Field(c.DEFAULT_JOB_TIMEOUT_S, gt=0)
    attempts: int = Field(c.DEFAULT_ATTEMPTS, ge=1)
    backoff_base: float = Field(c.DEFAULT_BACKOFF_BASE_S, ge=0)
    backoff_max: float = Field(c.DEFAULT_BACKOFF_MAX_S, ge=0)
    backoff_jitter: float = Field(c.DEFAULT_BACKOFF_JITTER, ge=0, le=1)
    keep_completed: int = Field(c.DEFAULT_KEEP_COMPLETED, ge=0)
    keep_completed_age: float = Field(c.DEFAULT_KEEP_COMPLETED_AGE_S, ge=0)
    keep_failed: int = Field(c.DEFAULT_KEEP_FAILED, ge=0)
    keep_failed_age: float = Field(c.DEFAULT_KEEP_FAILED_AGE_S, ge=0)
    poll_delay: float = Field(c.DEFAULT_POLL_DELAY_S, gt=0)
    tick_interval: float = Field(c.DEFAULT_TICK_INTERVAL_S, gt=0)
    worker_lease: float = Field(c.DEFAULT_WORKER_LEASE_S, gt=0)
    cancel_grace: float = Field(c.DEFAULT_CANCEL_GRACE_S, ge=0)


# Defaults that differ from QueueOptions' own, per queue. The embedding queues run 256 jobs at once:
# a job waiting for its batch's request holds a slot but no CPU, and with 64 inputs a request
# (workers.providers.batching) that lets four batches be filling or in flight (measured: 128 -> 363, 256 -> 631
# products/s at 150 ms per request; 512 no better).
QUEUE_DEFAULTS: dict[str, dict[str, Any]] = {
    c.QueueName.PRODUCT_EMBEDDING: {"concurrency": 256, "timeout": 60, "attempts": 3, "backoff_base": 2},
    c.QueueName.PRODUCT_ENRICHMENT: {"concurrency": 2, "timeout": 120, "attempts": 3, "backoff_base": 5},
    c.QueueName.TASTE_PROFILE_EMBEDDING: {"concurrency": 256, "timeout": 60, "attempts": 3, "backoff_base": 1},
    c.QueueName.CURATED_COLLECTIONS: {"concurrency": 1, "timeout": 600, "attempts": 2, "backoff_base": 30},
    c.QueueName.REMINDER_DISPATCH: {"concurrency": 10, "timeout": 30, "attempts": 5, "backoff_base": 10},
}


def _env_options(queue: str) -> dict[str, Any]:
    prefix = queue_prefix(queue)
    fields = QueueOptions.model_fields
    # Each variable is optional and checked against its option's own type and bounds.
    annotations = {name: Annotated[(info.annotation, *info.metadata)] | None for name, info in fields.items()}
    env_model = type(
        "QueueOptionsEnv",
        (BaseSettings,),
        {
            "__annotations__": annotations,
            **dict.fromkeys(fields),
            "model_config": SettingsConfigDict(env_prefix=prefix, extra="ignore"),
        },
    )
    try:
        return env_model().model_dump(exclude_none=True)
    except ValidationError as exc:
        raise ConfigurationError(describe(exc, fields, {name: prefix + name.upper() for name in fields})) from exc


def queue_options(queue: str, **overrides: Any) -> QueueOptions:
    """Options for ``queue``: per-queue defaults, then the environment, then ``overrides``.

    A bad ``JOBQUEUE_<QUEUE>_<OPTION>`` value raises ``ConfigurationError`` naming the variable.
    """
    merged = {**QUEUE_DEFAULTS.get(queue, {}), **_env_options(queue), **overrides}
    return QueueOptions(**merged)
