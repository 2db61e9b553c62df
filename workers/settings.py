"""The five arq settings classes, built from the environment when first asked for."""

from __future__ import annotations

import datetime as dt

from arq.cron import cron

from jobqueue import QueueName, build_worker_settings
from jobqueue._env import read_settings
from workers.config import WorkerEnv
from workers.jobs.collections import curated_collections, daily_curated_collections
from workers.jobs.products import product_embedding, product_enrichment
from workers.jobs.reminders import reminder_dispatch
from workers.jobs.taste import taste_profile_embedding
from workers.resources import make_hooks

# arq evaluates cron schedules in this zone; COLLECTIONS_CRON_HOUR is a UTC hour.
TIMEZONE = dt.UTC
# The cron run's result key (an hour) is what stops a second worker process from enqueueing the
# same run again once the first has finished it.
CRON_KEEP_RESULT_S = 3600


def embedding_settings() -> type:
    start, stop = make_hooks(embeddings=QueueName.PRODUCT_EMBEDDING, batch_lane=QueueName.PRODUCT_EMBEDDING)
    return build_worker_settings(
        QueueName.PRODUCT_EMBEDDING, product_embedding, name="EmbeddingSettings", on_startup=start, on_shutdown=stop
    )


def enrichment_settings() -> type:
    start, stop = make_hooks(llm=QueueName.PRODUCT_ENRICHMENT, batch_lane=QueueName.PRODUCT_ENRICHMENT)
    return build_worker_settings(
        QueueName.PRODUCT_ENRICHMENT, product_enrichment, name="EnrichmentSettings", on_startup=start, on_shutdown=stop
    )


def taste_profile_settings() -> type:
    start, stop = make_hooks(embeddings=QueueName.TASTE_PROFILE_EMBEDDING, batch_lane=QueueName.TASTE_PROFILE_EMBEDDING)
    return build_worker_settings(
        QueueName.TASTE_PROFILE_EMBEDDING,
        taste_profile_embedding,
        name="TasteProfileSettings",
        on_startup=start,
        on_shutdown=stop,
    )


def collections_settings() -> type:
    env = read_settings(WorkerEnv)
    start, stop = make_hooks(llm=QueueName.CURATED_COLLECTIONS)
    daily = cron(
        daily_curated_collections,
        name="daily_curated_collections",
        hour=env.collections_cron_hour,
        minute=env.collections_cron_minute,
        unique=True,
        keep_result=CRON_KEEP_RESULT_S,
    )
    return build_worker_settings(
        QueueName.CURATED_COLLECTIONS,
        curated_collections,
        name="CollectionsSettings",
        cron_jobs=[daily],
        on_startup=start,
        on_shutdown=stop,
        timezone=TIMEZONE,
    )


def reminders_settings() -> type:
    start, stop = make_hooks(notifier=True)
    return build_worker_settings(
        QueueName.REMINDER_DISPATCH, reminder_dispatch, name="RemindersSettings", on_startup=start, on_shutdown=stop
    )


BUILDERS = {
    "EmbeddingSettings": embedding_settings,
    "EnrichmentSettings": enrichment_settings,
    "TasteProfileSettings": taste_profile_settings,
    "CollectionsSettings": collections_settings,
    "RemindersSettings": reminders_settings,
}
