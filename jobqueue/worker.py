"""Building arq ``WorkerSettings`` classes that carry jobqueue's behaviour.

``arq workers.EmbeddingSettings`` runs arq's own ``Worker``; everything jobqueue adds rides on what
a settings class can hold: the wrapped job function (which owns each run through the START and
FINISH scripts), ``on_startup``/``on_shutdown`` hooks, a background tick started in ``on_startup``
(heartbeat, lease renewal, promotion of due jobs, return of expired runs, pause), the JSON
serializer and a deserializer that never runs or drops what it cannot read. arq reads only a
settings class's own ``__dict__``, so the class is built flat. The running ``Worker`` object is
never touched.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from arq.cron import CronJob
from arq.worker import func
from redis.exceptions import RedisError

from jobqueue import _arq, _redis_errors
from jobqueue._json import dumps_bytes
from jobqueue._redis_settings import LazyRedisSettings
from jobqueue._runner import STATE_KEY, Handler, make_job_function
from jobqueue._scheduler import SCHEDULER_KEY, start_scheduler, stop_scheduler
from jobqueue._state import WorkerState
from jobqueue.constants import ARQ_MAX_TRIES, ARQ_TIMEOUT_MARGIN_S, RECORD_RETRY_S
from jobqueue.metrics import start_metrics_server
from jobqueue.options import QueueOptions, queue_options
from jobqueue.queue import Queue
from jobqueue.queues import get_queue

logger = logging.getLogger("jobqueue.worker")

Hook = Callable[[dict[str, Any]], Awaitable[None]]


async def warn_unless_noeviction(redis: Any, queue: str) -> str | None:
    """Log a warning when Redis may evict keys (jobs, leases, heartbeats); returns the policy."""
    try:
        memory = await redis.info("memory")
    except RedisError:  # INFO may be disabled on a managed Redis: nothing to check then
        return None
    policy = memory.get("maxmemory_policy")
    if policy and policy != "noeviction":
        logger.warning(
            "%s: Redis runs with maxmemory-policy %s: under memory pressure it may evict jobs, leases "
            "or heartbeats. jobqueue requires maxmemory-policy noeviction.",
            queue,
            policy,
        )
    return policy


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
    # arq's timeout is final (it deletes the job), so it must never fire before ours has been
    # handled: ours, the cancel grace, START and FINISH each waiting out Redis, and a margin.
    arq_timeout = opts.timeout + opts.cancel_grace + 2 * RECORD_RETRY_S + ARQ_TIMEOUT_MARGIN_S
    # The TTL arq gives its in-progress key (Worker.__init__: the longest function timeout + 10 s),
    # which our one-script claim sets in its place (jobqueue._arq).
    in_progress_ms = int((max([arq_timeout, *(c.timeout_s or arq_timeout for c in cron_jobs)]) + 10) * 1000)

    async def startup(ctx: dict[str, Any]) -> None:
        _arq.install_log_filter(q.function)
        _arq.follow_arq_logging()
        worker_id = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
        state = WorkerState(q, opts, worker_id, ctx["redis"])
        ctx[STATE_KEY] = state
        state.claims = _arq.make_claims_safe(state.redis, q.keys.queue, in_progress_ms)
        state.claims.claim = state.claim
        await warn_unless_noeviction(state.redis, q.name)
        try:
            wait = await state.tick()  # the pause flag is known before arq's first poll
        except (RedisError, OSError) as exc:
            # Out of memory, say: the tick retries; START checks the pause flag anyway.
            logger.warning("%s: first worker tick failed, will retry: %s", q.name, _redis_errors.describe(exc))
            wait = opts.tick_interval
        state.tick_task = asyncio.create_task(state.run_ticks(wait), name=f"jobqueue-tick-{q.name}")
        ctx[SCHEDULER_KEY] = start_scheduler(q, ctx["redis"])  # recurring schedules: jobqueue._scheduler
        logger.info("%s: worker %s started (concurrency %d)", q.name, worker_id, opts.concurrency)
        start_metrics_server(state)
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
                state.tick_task = None
                # Our runs have ended (arq waited for them): the worker's entry can go now.
                try:
                    await state.redis.delete(q.keys.worker(state.worker_id))
                    await state.redis.zrem(q.keys.workers, state.worker_id)
                except (RedisError, OSError) as exc:
                    logger.warning("%s: could not remove worker %s: %s", q.name, state.worker_id, exc)

    attrs: dict[str, Any] = {
        "functions": [func(job_function, name=q.function, timeout=arq_timeout, max_tries=ARQ_MAX_TRIES, keep_result=0)],
        "queue_name": q.keys.queue,
        "redis_settings": LazyRedisSettings(),
        "job_serializer": dumps_bytes,
        "job_deserializer": _arq.job_deserializer(q.function, [c.name for c in cron_jobs]),
        "max_jobs": opts.concurrency,
        "job_timeout": arq_timeout,
        "keep_result": 0,
        "max_tries": ARQ_MAX_TRIES,
        "poll_delay": opts.poll_delay,
        "health_check_interval": 10,
        "on_startup": startup,
        "on_shutdown": shutdown,
        "cron_jobs": list(cron_jobs),
        **overrides,
    }
    _arq.verify_arq(attrs)
    attrs["jobqueue_queue"] = q
    attrs["jobqueue_options"] = opts
    return type(name or f"{q.function.title().replace('_', '')}Settings", (), attrs)
