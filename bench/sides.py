"""The two sides under test, behind one interface: jobqueue's public API, and arq used directly.

Both store the same job (function ``product_embedding``, payload ``{"product_id": ...}``, id
``product-embedding:<product id>``) as JSON: arq is given a compact JSON serializer, the same
encoding jobqueue uses, so neither side pays for pickle.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any, Protocol

from arq.connections import ArqRedis, RedisSettings, create_pool
from arq.worker import func, get_kwargs

import jobqueue
from bench.config import ARQ_DEFAULT_POLL_S, ARQ_GATHER, ARQ_QUEUE, FUNCTION, QUEUE
from jobqueue.worker import Worker as JobqueueWorker
from jobqueue.worker._worker import ArqWorker as Worker  # arq's own class, for the raw side

OnStart = Callable[[str], None]  # called with the product id when a job's handler starts


def json_dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def json_loads(raw: bytes | str) -> Any:
    return json.loads(raw)


class Side(Protocol):
    name: str
    default_poll_delay: float

    async def enqueue_one(self, product_id: str) -> None: ...

    async def enqueue_bulk(self, payloads: list[dict[str, str]]) -> None: ...

    def worker(
        self, on_start: OnStart | None, *, burst: bool, concurrency: int | None = None, poll_delay: float | None = None
    ) -> Worker:
        """An arq ``Worker``, built inside the running loop; None means this side's default."""
        ...

    def completed(self, worker: Worker) -> int:
        """Jobs the worker completed."""
        ...


class Ours:
    """jobqueue, through its public helpers and ``build_worker_settings``."""

    name = "jobqueue"

    def __init__(self) -> None:
        self.default_poll_delay = jobqueue.queue_options(QUEUE).poll_delay

    async def enqueue_one(self, product_id: str) -> None:
        await jobqueue.enqueue_product_embedding(product_id)

    async def enqueue_bulk(self, payloads: list[dict[str, str]]) -> None:
        await jobqueue.enqueue_many(QUEUE, payloads)

    def worker(
        self, on_start: OnStart | None, *, burst: bool, concurrency: int | None = None, poll_delay: float | None = None
    ) -> Worker:
        async def handler(ctx: dict[str, Any], payload: jobqueue.ProductEmbeddingJobPayload) -> None:
            if on_start is not None:
                on_start(payload.product_id)

        overrides: dict[str, Any] = {}
        if concurrency is not None:
            overrides["concurrency"] = concurrency
        if poll_delay is not None:
            overrides["poll_delay"] = poll_delay
        options = jobqueue.queue_options(QUEUE, **overrides)
        settings = jobqueue.build_worker_settings(QUEUE, handler, options=options)
        return JobqueueWorker(**get_kwargs(settings), burst=burst, handle_signals=False)

    def completed(self, worker: Worker) -> int:
        return worker.ctx["jobqueue"].counters["completed"]


class RawArq:
    """arq 0.28 on its own: ``enqueue_job`` and a plain ``Worker`` with arq's defaults."""

    name = "raw arq"
    default_poll_delay = ARQ_DEFAULT_POLL_S

    def __init__(self, url: str, pool: ArqRedis) -> None:
        self.url = url
        self.pool = pool

    @classmethod
    async def connect(cls, url: str) -> RawArq:
        pool = await create_pool(RedisSettings.from_dsn(url), job_serializer=json_dumps, job_deserializer=json_loads)
        return cls(url, pool)

    async def enqueue_one(self, product_id: str) -> None:
        await self.pool.enqueue_job(
            FUNCTION, {"product_id": product_id}, _job_id=f"{QUEUE}:{product_id}", _queue_name=ARQ_QUEUE
        )

    async def enqueue_bulk(self, payloads: list[dict[str, str]]) -> None:
        for i in range(0, len(payloads), ARQ_GATHER):
            await asyncio.gather(
                *(
                    self.pool.enqueue_job(FUNCTION, p, _job_id=f"{QUEUE}:{p['product_id']}", _queue_name=ARQ_QUEUE)
                    for p in payloads[i : i + ARQ_GATHER]
                )
            )

    def worker(
        self, on_start: OnStart | None, *, burst: bool, concurrency: int | None = None, poll_delay: float | None = None
    ) -> Worker:
        async def product_embedding(ctx: dict[str, Any], payload: dict[str, Any]) -> None:
            if on_start is not None:
                on_start(payload["product_id"])

        extra: dict[str, Any] = {}  # left out: arq's own default (max_jobs 10, poll_delay 0.5)
        if concurrency is not None:
            extra["max_jobs"] = concurrency
        if poll_delay is not None:
            extra["poll_delay"] = poll_delay
        return Worker(
            functions=[func(product_embedding, name=FUNCTION)],
            queue_name=ARQ_QUEUE,
            redis_settings=RedisSettings.from_dsn(self.url),
            burst=burst,
            handle_signals=False,
            job_serializer=json_dumps,
            job_deserializer=json_loads,
            **extra,
        )

    def completed(self, worker: Worker) -> int:
        return worker.jobs_complete

    async def aclose(self) -> None:
        await self.pool.aclose()
