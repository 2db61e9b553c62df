"""The enqueue helpers the Core API calls: one per job kind, plus the conveniences of the seed."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from jobqueue import _validate, tracing
from jobqueue.backend import _autopipeline, _replicated, _scripts
from jobqueue.backend.connection import get_redis, redis_errors
from jobqueue.coreapi.payloads import SURFACES, Lane, ReminderDispatchJobPayload
from jobqueue.coreapi.queues import (
    curated_collections_queue,
    get_queue,
    product_embedding_queue,
    product_enrichment_queue,
    reminder_dispatch_queue,
    taste_profile_embedding_queue,
)
from jobqueue.queue.job import JobHandle, PreparedJob
from jobqueue.queue.queue import Queue
from jobqueue.settings import get_settings


def _fields(**values: Any) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}


async def enqueue_product_embedding(
    product_id: str,
    *,
    triggered_by: str | None = None,
    previous_text_hash: str | None = None,
    priority: int | None = None,
    delay: float | dt.timedelta | None = None,
    lane: Lane = "sync",
) -> JobHandle:
    """Embed a product for vector search. Job id ``product-embedding:{product_id}``, priority 2.

    ``lane="batch"`` embeds it through the provider's Batch API (half price, within 24 h).
    """
    payload = _fields(
        product_id=product_id,
        triggered_by=triggered_by,
        previous_text_hash=previous_text_hash,
        lane=_validate.lane(lane),
    )
    return await product_embedding_queue.enqueue(payload, priority=priority, delay=delay)


async def enqueue_product_enrichment(
    product_id: str,
    *,
    triggered_by: str | None = None,
    prompt_version: str | None = None,
    current_enrichment_version: int | None = None,
    priority: int | None = None,
    delay: float | dt.timedelta | None = None,
    lane: Lane = "sync",
) -> JobHandle:
    """Enrich a product with LLM metadata. Job id ``product-enrichment:{product_id}``, priority 3.

    ``lane="batch"`` asks the LLM through the provider's Batch API (half price, within 24 h).
    """
    payload = _fields(
        product_id=product_id,
        triggered_by=triggered_by,
        prompt_version=prompt_version,
        current_enrichment_version=current_enrichment_version,
        lane=_validate.lane(lane),
    )
    return await product_enrichment_queue.enqueue(payload, priority=priority, delay=delay)


async def enqueue_taste_profile_embedding(
    taste_profile_id: str,
    user_id: str,
    *,
    triggered_by: str | None = None,
    recipient_id: str | None = None,
    priority: int | None = None,
    delay: float | dt.timedelta | None = None,
    lane: Lane = "sync",
) -> JobHandle:
    """Embed a taste profile. Job id ``taste-profile-embedding:{taste_profile_id}``, priority 1.

    ``lane="batch"`` embeds it through the provider's Batch API (half price, within 24 h).
    """
    payload = _fields(
        taste_profile_id=taste_profile_id,
        user_id=user_id,
        triggered_by=triggered_by,
        recipient_id=recipient_id,
        lane=_validate.lane(lane),
    )
    return await taste_profile_embedding_queue.enqueue(payload, priority=priority, delay=delay)


def _collections_payload(
    surface: str,
    date: dt.date | str,
    collections_count: int,
    products_per_collection: int,
    filters: Any,
    triggered_by: str | None,
) -> dict[str, Any]:
    return _fields(
        surface=surface,
        date=date,
        collections_count=collections_count,
        products_per_collection=products_per_collection,
        filters=filters,
        triggered_by=triggered_by,
    )


async def enqueue_curated_collections(
    surface: str,
    date: dt.date | str,
    *,
    collections_count: int = 6,
    products_per_collection: int = 8,
    filters: Mapping[str, Any] | None = None,
    triggered_by: str | None = None,
    priority: int | None = None,
    delay: float | dt.timedelta | None = None,
) -> JobHandle:
    """Build a surface's collections for a date.

    Job id ``curated-collections:{surface}:{date}``, priority 4.
    """
    payload = _collections_payload(surface, date, collections_count, products_per_collection, filters, triggered_by)
    return await curated_collections_queue.enqueue(payload, priority=priority, delay=delay)


async def enqueue_reminder_dispatch(
    schedule_id: str,
    user_id: str,
    channel: str,
    content: Mapping[str, Any],
    scheduled_for: dt.datetime | str,
    *,
    occasion_id: str | None = None,
    triggered_by: str | None = None,
    priority: int | None = None,
) -> JobHandle:
    """Send a reminder at ``scheduled_for`` (at once if it is past).

    Job id ``reminder-dispatch:{schedule_id}``, priority 1.
    """
    data = _fields(
        schedule_id=schedule_id,
        user_id=user_id,
        channel=channel,
        content=content,
        scheduled_for=scheduled_for,
        occasion_id=occasion_id,
        triggered_by=triggered_by,
    )
    payload = _validate.payload(ReminderDispatchJobPayload, data, reminder_dispatch_queue.name)
    return await reminder_dispatch_queue.enqueue(payload, priority=priority, run_at=payload.scheduled_for)


@dataclass(frozen=True, slots=True)
class ProductProcessingJobs:
    """The two jobs ``enqueue_product_processing`` adds."""

    enrichment_job: JobHandle
    embedding_job: JobHandle


async def _enqueue_across(batches: list[tuple[Queue, list[PreparedJob]]]) -> list[JobHandle]:
    """Write prepared jobs of several queues in one pipelined round per Redis (queues with a
    ``JOBQUEUE_<QUEUE>_REDIS_URL`` of their own are written on it, at the same time)."""
    if _autopipeline.enabled() or tracing.active() is not None or _replicated.wanted():
        # Made in one turn, the calls share one round trip per Redis (and each queue's jobs get
        # their spans; under JOBQUEUE_ENQUEUE_REPLICAS each queue's call waits for its replicas).
        written = await asyncio.gather(*(queue.enqueue_prepared(jobs) for queue, jobs in batches))
        return [handle for handles in written for handle in handles]
    settings = get_settings()
    by_server: dict[str, list[int]] = {}
    for i, (queue, _) in enumerate(batches):
        by_server.setdefault(settings.queue_redis_url(queue.name), []).append(i)
    replies: list[Any] = [None] * len(batches)

    async def write(indexes: list[int]) -> None:
        name = batches[indexes[0]][0].name  # any queue of this server picks its client
        async with redis_errors(queue=name):
            redis = get_redis(name)
            pipe = redis.pipeline(transaction=False)
            for i in indexes:
                queue, jobs = batches[i]
                _scripts.ENQUEUE.queue_in(pipe, [], queue.script_args(jobs))
            for i, reply in zip(indexes, await _scripts.run_pipeline(redis, pipe, _scripts.ENQUEUE), strict=True):
                replies[i] = reply

    if len(by_server) == 1:
        await write(next(iter(by_server.values())))
    else:
        errors = await asyncio.gather(*(write(ix) for ix in by_server.values()), return_exceptions=True)
        for error in errors:
            if error is not None:
                raise error
    handles = []
    for (queue, jobs), codes in zip(batches, replies, strict=True):
        handles += [JobHandle(j.job_id, queue.name, c == 1, c == 2, queue) for j, c in zip(jobs, codes, strict=True)]
    return handles


async def enqueue_product_processing(
    product_id: str,
    *,
    triggered_by: str | None = None,
    previous_text_hash: str | None = None,
    prompt_version: str | None = None,
    current_enrichment_version: int | None = None,
    priority: int | None = None,
    delay: float | dt.timedelta | None = None,
    lane: Lane = "sync",
) -> ProductProcessingJobs:
    """Enqueue both enrichment and embedding for a product, validated together, in one round trip."""
    on_lane = _validate.lane(lane)
    enrichment = product_enrichment_queue.prepare(
        _fields(
            product_id=product_id,
            triggered_by=triggered_by,
            prompt_version=prompt_version,
            current_enrichment_version=current_enrichment_version,
            lane=on_lane,
        ),
        priority=priority,
        delay=delay,
    )
    embedding = product_embedding_queue.prepare(
        _fields(product_id=product_id, triggered_by=triggered_by, previous_text_hash=previous_text_hash, lane=on_lane),
        priority=priority,
        delay=delay,
    )
    enrichment_job, embedding_job = await _enqueue_across(
        [(product_enrichment_queue, [enrichment]), (product_embedding_queue, [embedding])]
    )
    return ProductProcessingJobs(enrichment_job=enrichment_job, embedding_job=embedding_job)


async def schedule_daily_curated_collections(
    date: dt.date | str | None = None, *, triggered_by: str = "scheduled"
) -> list[JobHandle]:
    """Enqueue the collections of every surface (home, discovery, occasion) for ``date``.

    ``date`` defaults to today (UTC). Returns the three handles.
    """
    day = date if date is not None else dt.datetime.now(dt.UTC).date()
    jobs = [curated_collections_queue.prepare(_collections_payload(s, day, 6, 8, None, triggered_by)) for s in SURFACES]
    return await _enqueue_across([(curated_collections_queue, jobs)])


async def enqueue_many(
    queue: str | Queue,
    payloads: Iterable[Any],
    *,
    priority: int | None = None,
    delay: float | dt.timedelta | None = None,
) -> list[JobHandle]:
    """Enqueue many jobs of one queue: all validated first, then written in one pipelined round.

    ``payloads`` are payload models or dicts of that queue (e.g. ``{"product_id": "p1"}``).
    """
    return await get_queue(queue).add_bulk(payloads, priority=priority, delay=delay)


async def enqueue_product_embeddings(
    product_ids: Iterable[str],
    *,
    triggered_by: str | None = None,
    priority: int | None = None,
    delay: float | dt.timedelta | None = None,
    lane: Lane = "sync",
) -> list[JobHandle]:
    """Bulk variant of ``enqueue_product_embedding`` (``lane="batch"`` for a catalogue re-embed)."""
    on_lane = _validate.lane(lane)
    payloads = [_fields(product_id=pid, triggered_by=triggered_by, lane=on_lane) for pid in product_ids]
    return await product_embedding_queue.add_bulk(payloads, priority=priority, delay=delay)


async def enqueue_product_enrichments(
    product_ids: Iterable[str],
    *,
    triggered_by: str | None = None,
    prompt_version: str | None = None,
    priority: int | None = None,
    delay: float | dt.timedelta | None = None,
    lane: Lane = "sync",
) -> list[JobHandle]:
    """Bulk variant of ``enqueue_product_enrichment`` (``lane="batch"`` for a catalogue re-enrichment)."""
    on_lane = _validate.lane(lane)
    payloads = [
        _fields(product_id=pid, triggered_by=triggered_by, prompt_version=prompt_version, lane=on_lane)
        for pid in product_ids
    ]
    return await product_enrichment_queue.add_bulk(payloads, priority=priority, delay=delay)


async def enqueue_taste_profile_embeddings(
    profiles: Iterable[tuple[str, str]],
    *,
    triggered_by: str | None = None,
    priority: int | None = None,
    delay: float | dt.timedelta | None = None,
    lane: Lane = "sync",
) -> list[JobHandle]:
    """Bulk variant of ``enqueue_taste_profile_embedding``: ``profiles`` are
    ``(taste_profile_id, user_id)`` pairs."""
    on_lane = _validate.lane(lane)
    payloads = [
        _fields(taste_profile_id=tid, user_id=uid, triggered_by=triggered_by, lane=on_lane) for tid, uid in profiles
    ]
    return await taste_profile_embedding_queue.add_bulk(payloads, priority=priority, delay=delay)
