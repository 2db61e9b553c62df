"""Building arq ``WorkerSettings`` classes that carry jobqueue's behaviour.

``arq workers.EmbeddingSettings`` runs arq's own ``Worker``; everything jobqueue adds rides on what
a settings class can hold: the wrapped job function, ``on_startup``/``on_shutdown``/``after_job_end``
hooks, a background task started in ``on_startup`` (heartbeat, promotion of due jobs, repair of
jobs whose worker died, pause) and the JSON serializer. arq reads only a settings class's own
``__dict__``, so the class is built flat.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
import sys
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from arq.cron import CronJob
from arq.worker import Worker, func
from redis.exceptions import RedisError

from jobqueue import _scripts
from jobqueue._json import dumps, dumps_bytes, loads
from jobqueue._redis_settings import LazyRedisSettings
from jobqueue._runner import (
    OUTCOME_KEY,
    STATE_KEY,
    Handler,
    make_job_function,
    now_ms,
    write_outcome,
)
from jobqueue._scheduler import SCHEDULER_KEY, start_scheduler, stop_scheduler
from jobqueue.constants import ARQ_MAX_TRIES, ARQ_TIMEOUT_MARGIN_S, PRIORITY_BAND, PROMOTE_BATCH
from jobqueue.options import QueueOptions, queue_options
from jobqueue.queue import Queue
from jobqueue.queues import get_queue

logger = logging.getLogger("jobqueue.worker")

Hook = Callable[[dict[str, Any]], Awaitable[None]]
# How long after_job_end keeps trying to record an outcome while Redis is away.
RECORD_RETRY_S = 30.0


@dataclass(slots=True)
class WorkerState:
    """One running worker's jobqueue side, kept in ``ctx["jobqueue"]``."""

    queue: Queue
    options: QueueOptions
    worker_id: str
    redis: Any
    worker: Worker
    tick_task: asyncio.Task[None] | None = None
    paused_by_us: bool = False

    async def tick(self) -> float:
        """Heartbeat, promote due jobs, repair orphans, follow the queue's pause flag.

        Returns the seconds until the next tick: the tick interval, or less when a delayed job
        falls due sooner, so it is promoted to its priority as soon as it is due.
        """
        k, o = self.queue.keys, self.options
        info = dumps({"host": socket.gethostname(), "pid": os.getpid(), "concurrency": o.concurrency})
        paused, _promoted, repaired, next_due_ms = await _scripts.TICK(
            self.redis,
            [k.queue, k.active, k.seq, k.paused, k.workers, k.completed, k.failed],
            [
                k.base,
                PRIORITY_BAND,
                now_ms(),
                self.worker_id,
                int(o.worker_lease * 1000),
                self.queue.default_priority,
                PROMOTE_BATCH,
                info,
            ],
        )
        if repaired:
            logger.warning("%s: %d job(s) of a stopped worker returned to waiting", self.queue.name, repaired)
        self._follow_pause(bool(paused))
        if 0 <= next_due_ms < o.tick_interval * 1000:
            return next_due_ms / 1000 + 0.001
        return o.tick_interval

    def _follow_pause(self, paused: bool) -> None:
        # arq's own shutdown also clears allow_pick_jobs: only undo what we did.
        if paused and self.worker.allow_pick_jobs:
            self.worker.allow_pick_jobs = False
            self.paused_by_us = True
        elif not paused and self.paused_by_us:
            self.worker.allow_pick_jobs = True
            self.paused_by_us = False

    async def run_ticks(self, first_wait: float) -> None:
        wait = first_wait
        while True:
            await asyncio.sleep(wait)
            try:
                wait = await self.tick()
            except (RedisError, OSError) as exc:
                wait = self.options.tick_interval
                logger.warning("%s: worker tick failed, will retry: %s", self.queue.name, exc)


def _running_worker() -> Worker:
    """The arq ``Worker`` whose ``main()`` is awaiting our ``on_startup`` (arq 0.28)."""
    frame = sys._getframe(2)
    while frame is not None:
        candidate = frame.f_locals.get("self")
        if isinstance(candidate, Worker):
            return candidate
        frame = frame.f_back
    raise RuntimeError("jobqueue's on_startup must be called by arq's Worker.main (arq 0.28)")


def build_worker_settings(
    queue: Queue | str,
    handler: Handler,
    *,
    name: str | None = None,
    options: QueueOptions | None = None,
    cron_jobs: Sequence[CronJob] = (),
    on_startup: Hook | None = None,
    on_shutdown: Hook | None = None,
    **overrides: Any,
) -> type:
    """A flat arq ``WorkerSettings`` class running ``handler(ctx, payload)`` for ``queue``.

    ``options`` defaults to ``queue_options(queue)`` (per-queue defaults and environment);
    ``on_startup``/``on_shutdown`` run after/before jobqueue's own; ``overrides`` are set on the
    class as they are (any arq ``Worker`` argument).
    """
    q = get_queue(queue)
    opts = options or queue_options(q.name)
    job_function = make_job_function(handler, q.payload_model)
    arq_timeout = opts.timeout + ARQ_TIMEOUT_MARGIN_S

    async def startup(ctx: dict[str, Any]) -> None:
        worker_id = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
        state = WorkerState(q, opts, worker_id, ctx["redis"], _running_worker())
        ctx[STATE_KEY] = state
        wait = await state.tick()  # the pause flag is known before arq's first poll
        state.tick_task = asyncio.create_task(state.run_ticks(wait), name=f"jobqueue-tick-{q.name}")
        ctx[SCHEDULER_KEY] = start_scheduler(q, ctx["redis"])  # recurring schedules: jobqueue._scheduler
        logger.info("%s: worker %s started (concurrency %d)", q.name, worker_id, opts.concurrency)
        if on_startup is not None:
            await on_startup(ctx)

    async def shutdown(ctx: dict[str, Any]) -> None:
        try:
            if on_shutdown is not None:
                await on_shutdown(ctx)
        finally:
            await stop_scheduler(ctx.pop(SCHEDULER_KEY, None))
            state: WorkerState | None = ctx.get(STATE_KEY)
            if state is not None and state.tick_task is not None:
                state.tick_task.cancel()
                await asyncio.gather(state.tick_task, return_exceptions=True)
                # Our jobs have ended (arq waited for them): others need not wait for the lease.
                await state.redis.delete(q.keys.worker(state.worker_id))
                await state.redis.zrem(q.keys.workers, state.worker_id)

    async def after_job_end(ctx: dict[str, Any]) -> None:
        outcome = ctx.get(OUTCOME_KEY)
        if outcome is None:  # a cron job or a run that never reached our wrapper
            return
        state: WorkerState = ctx[STATE_KEY]
        deadline = asyncio.get_running_loop().time() + RECORD_RETRY_S
        pause = 0.1
        while True:
            try:
                await write_outcome(state, ctx["job_id"], outcome)
                return
            except (RedisError, OSError) as exc:
                if asyncio.get_running_loop().time() + pause > deadline:
                    # The job itself is settled in arq's keys; only our record of it is lost.
                    logger.error("%s: could not record outcome of %s: %s", q.name, ctx["job_id"], exc)
                    return
                await asyncio.sleep(pause)
                pause = min(pause * 2, 2.0)

    attrs: dict[str, Any] = {
        "functions": [func(job_function, name=q.function, timeout=arq_timeout, max_tries=ARQ_MAX_TRIES, keep_result=0)],
        "queue_name": q.keys.queue,
        "redis_settings": LazyRedisSettings(),
        "job_serializer": dumps_bytes,
        "job_deserializer": loads,
        "max_jobs": opts.concurrency,
        "job_timeout": arq_timeout,
        "keep_result": 0,
        "max_tries": ARQ_MAX_TRIES,
        "poll_delay": opts.poll_delay,
        "health_check_interval": 10,
        "on_startup": startup,
        "on_shutdown": shutdown,
        "after_job_end": after_job_end,
        "cron_jobs": list(cron_jobs),
        "jobqueue_queue": q,
        "jobqueue_options": opts,
        **overrides,
    }
    return type(name or f"{q.function.title().replace('_', '')}Settings", (), attrs)
