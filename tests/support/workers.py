"""Job handlers and worker settings the tests run, in-process or as ``arq`` subprocesses.

A test steers a job through Redis: ``jq:test:behaviour:<product_id>`` holds JSON such as
``{"fail": 2}`` (raise on the first two attempts), ``{"permanent": true}``, ``{"progress": [10, 50]}``
and ``{"logs": ["a"]}`` (report them, first thing), ``{"block": true}``
(wait until ``jq:test:release:<product_id>`` exists; with ``"per_try": true`` each attempt waits
for ``...:<attempt>``), ``{"retry_after": 0.3}`` or ``{"sleep_then_slow_cancel": 6}`` (run until
cancelled, then take 6 s to clean up and count ``jq:test:cleaned:<product_id>``). Every run start is
appended to ``jq:test:runs`` as JSON, so tests can read execution order and timing.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
from typing import Any

import redis.asyncio as aioredis
from arq.worker import get_kwargs

from jobqueue import (
    PermanentJobError,
    ProductEmbeddingJobPayload,
    ProductEmbeddingJobResult,
    RetryableJobError,
    add_job_log,
    update_progress,
)
from jobqueue.worker import Worker, build_worker_settings
from jobqueue.worker.options import QueueOptions

RUNS_KEY = "jq:test:runs"
# Ids of jobs whose blocked handler was cancelled (by a stop or by cancel_job), in order.
CANCELLED_KEY = "jq:test:cancelled"


def behaviour_key(product_id: str) -> str:
    return f"jq:test:behaviour:{product_id}"


def release_key(product_id: str, attempt: int | None = None) -> str:
    suffix = "" if attempt is None else f":{attempt}"
    return f"jq:test:release:{product_id}{suffix}"


def cleaned_key(product_id: str) -> str:
    return f"jq:test:cleaned:{product_id}"


async def _slow_cleanup(product_id: str, seconds: float) -> None:
    await asyncio.sleep(seconds)
    # The worker (and its pool) may be gone by now: a client of its own, closed after use.
    client = aioredis.Redis.from_url(os.environ["REDIS_URL"])
    try:
        await client.incr(cleaned_key(product_id))
    finally:
        await client.aclose()


async def record_handler(ctx: dict[str, Any], payload: ProductEmbeddingJobPayload) -> ProductEmbeddingJobResult:
    redis = ctx["redis"]
    pid = payload.product_id
    raw = await redis.get(behaviour_key(pid))
    behaviour = json.loads(raw) if raw else {}
    run = {
        "product_id": pid,
        "job_id": ctx["job_id"],
        "try": ctx["job_try"],
        "at": time.time(),
        "pid": os.getpid(),
        "triggered_by": payload.triggered_by,
    }
    await redis.rpush(RUNS_KEY, json.dumps(run))
    for value in behaviour.get("progress", []):
        await update_progress(ctx, value)
    for line in behaviour.get("logs", []):
        await add_job_log(ctx, f"{line} (try {ctx['job_try']})")
    if behaviour.get("block"):
        # "per_try": each attempt waits for its own key (release_key(pid, try)).
        key = release_key(pid, ctx["job_try"]) if behaviour.get("per_try") else release_key(pid)
        try:
            while not await redis.exists(key):
                await asyncio.sleep(0.01)
        except asyncio.CancelledError:
            await asyncio.shield(redis.rpush(CANCELLED_KEY, ctx["job_id"]))
            raise
    if "sleep_then_slow_cancel" in behaviour:
        # Runs past any timeout, then takes this long to clean up once cancelled.
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            await asyncio.shield(_slow_cleanup(pid, behaviour["sleep_then_slow_cancel"]))
            raise
    if behaviour.get("permanent"):
        raise PermanentJobError(f"product {pid} cannot be embedded")
    if ctx["job_try"] <= behaviour.get("fail", 0):
        if "retry_after" in behaviour:
            raise RetryableJobError("rate limited", retry_after=behaviour["retry_after"])
        raise RuntimeError(f"transient failure {ctx['job_try']}")
    return ProductEmbeddingJobResult(status="processed", product_id=pid, text_hash=f"hash-{pid}")


def test_options(**overrides: Any) -> QueueOptions:
    values: dict[str, Any] = {
        "concurrency": 1,
        "timeout": 10,
        "attempts": 3,
        "backoff_base": 0.2,
        "backoff_max": 5,
        "backoff_jitter": 0,
        "poll_delay": 0.01,
        "tick_interval": 0.05,
        "worker_lease": 1.0,
    }
    values.update(overrides)
    return QueueOptions(**values)


def settings_for(**overrides: Any) -> type:
    return build_worker_settings("product-embedding", record_handler, options=test_options(**overrides))


# For subprocess workers: `arq tests.support.workers.EmbeddingTestSettings`
EmbeddingTestSettings = build_worker_settings(
    "product-embedding",
    record_handler,
    name="EmbeddingTestSettings",
    options=test_options(
        concurrency=int(os.environ.get("JOBQUEUE_TEST_CONCURRENCY", "1")),
        attempts=int(os.environ.get("JOBQUEUE_TEST_ATTEMPTS", "3")),
    ),
)


HOOKS_KEY = "jq:test:hooks"


async def record_completed(ctx: dict[str, Any], job: Any, result: Any) -> None:
    """An ``on_completed`` hook: appends what it was given to ``jq:test:hooks``."""
    entry = {"hook": "completed", "job_id": job.job_id, "state": job.state, "pid": os.getpid()}
    entry |= {"result": result.model_dump(mode="json"), "finished": job.finished_at is not None}
    await ctx["redis"].rpush(HOOKS_KEY, json.dumps(entry))


async def record_failed(ctx: dict[str, Any], job: Any, error: str) -> None:
    """An ``on_failed`` hook: appends what it was given to ``jq:test:hooks``."""
    entry = {"hook": "failed", "job_id": job.job_id, "state": job.state, "pid": os.getpid(), "error": error}
    entry |= {"error_type": job.error_type, "attempts": job.attempts_made}
    await ctx["redis"].rpush(HOOKS_KEY, json.dumps(entry))


async def hooks_called(redis: Any) -> list[dict[str, Any]]:
    return [json.loads(r) for r in await redis.lrange(HOOKS_KEY, 0, -1)]


# For subprocess workers with outcome hooks: `arq tests.support.workers.EmbeddingHookSettings`
EmbeddingHookSettings = build_worker_settings(
    "product-embedding",
    record_handler,
    name="EmbeddingHookSettings",
    options=test_options(attempts=2),
    on_completed=record_completed,
    on_failed=record_failed,
)


def make_worker(settings: type, **kwargs: Any) -> Worker:
    """An in-process burst worker (stops when the queue is empty)."""
    return Worker(**{**get_kwargs(settings), "burst": True, "handle_signals": False, **kwargs})


async def run_burst(settings: type, **kwargs: Any) -> Worker:
    worker = make_worker(settings, **kwargs)
    try:
        await worker.async_run()
    finally:
        await worker.close()
    return worker


def counts(**nonzero: int) -> dict[str, int]:
    """The exact ``get_job_counts()`` answer with these counts and every other kind at 0."""
    kinds = ("waiting", "active", "completed", "failed", "delayed", "paused")
    unknown = set(nonzero) - set(kinds)
    assert not unknown, f"no such count kind: {unknown}"
    return {kind: nonzero.get(kind, 0) for kind in kinds}


async def runs(redis: Any) -> list[dict[str, Any]]:
    return [json.loads(r) for r in await redis.lrange(RUNS_KEY, 0, -1)]


class RunningWorker:
    """An in-process worker that keeps polling until the test leaves the ``async with`` block."""

    def __init__(self, settings: type, **kwargs: Any) -> None:
        self.worker = Worker(**{**get_kwargs(settings), "handle_signals": False, **kwargs})
        self.task: asyncio.Task[None] | None = None
        self.polls = 0
        poll_once = self.worker._poll_iteration

        async def counted_poll() -> None:
            await poll_once()
            self.polls += 1

        self.worker._poll_iteration = counted_poll  # type: ignore[method-assign]

    async def __aenter__(self) -> Worker:
        self.task = asyncio.create_task(self.worker.async_run())
        return self.worker

    async def __aexit__(self, *exc: object) -> None:
        # Stop picking, let one whole poll pass (a start in flight completes), then let the runs
        # end. arq's close() would otherwise cancel a run mid-command: the cancellation escapes
        # close(), and the job's in-progress key stays until its timeout.
        self.worker.allow_pick_jobs = False
        seen = self.polls
        deadline = asyncio.get_running_loop().time() + 15
        while self.polls < seen + 2 or any(not t.done() for t in self.worker.tasks.values()):
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError("the worker did not go idle within 15 s")
            await asyncio.sleep(0.005)
        await self.worker.close()
        if self.task is not None:
            await asyncio.gather(self.task, return_exceptions=True)


async def progress_steps(queue: Any, job_id: str) -> list[str]:
    """The steps a job reported, from its queue's events, up to its completion."""
    steps = []
    async with asyncio.timeout(10), contextlib.aclosing(queue.events(since="0")) as events:
        async for event in events:
            if event.job_id == job_id and event.name == "progress":
                steps.append(event.data["progress"]["step"])
            if event.job_id == job_id and event.name == "completed":
                return steps
    raise AssertionError("the events stream ended")
