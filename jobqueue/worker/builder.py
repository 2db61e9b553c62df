"""Building arq ``WorkerSettings`` classes whose workers run a jobqueue queue.

``arq workers.EmbeddingSettings`` builds ``jobqueue.worker.Worker`` (importing this module names it
in ``arq.worker``, where arq's ``create_worker`` looks): it claims, runs and finishes the queue's
jobs itself (``jobqueue.worker._worker``). The settings class carries what it needs: the queue's handler on
its one registered function, ``on_startup``/``on_shutdown`` hooks that build and tear down the
worker's state and background tick (heartbeat, lease renewal, return of expired runs), the JSON
serializer and a deserializer for arq's own cron jobs. arq reads only a settings class's own
``__dict__``, so the class is built flat.
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

from jobqueue._envnames import warn_unknown_variables
from jobqueue._tasks import cancel_and_wait
from jobqueue.backend import _redis_errors
from jobqueue.backend._json import dumps_bytes
from jobqueue.backend._pool import tune_pool
from jobqueue.backend._redis_settings import LazyRedisSettings, bound_reads
from jobqueue.coreapi.queues import get_queue
from jobqueue.errors import ConfigurationError
from jobqueue.metrics import start_metrics_server
from jobqueue.queue.queue import Queue
from jobqueue.settings import get_settings, redact_url
from jobqueue.worker import _arq, _worker
from jobqueue.worker._cancel_watch import watch_cancels
from jobqueue.worker._hooks import OutcomeHook, WorkerHooks
from jobqueue.worker._runner import STATE_KEY, Handler, RunSpec
from jobqueue.worker._scheduler import SCHEDULER_KEY, start_scheduler, stop_scheduler
from jobqueue.worker._state import WorkerState
from jobqueue.worker._worker import WORKER_KEY, Worker
from jobqueue.worker.options import QueueOptions, queue_options

logger = logging.getLogger("jobqueue.worker")

__all__ = ["Worker", "build_worker_settings", "warn_unless_noeviction"]

_worker.install()

# arq Worker arguments a settings class must not override: each would hand a part of the run path
# back to arq (which would then retry, abort, expire or delete jobs by its own rules) or change what
# the queue's jobs are read and written with. jobqueue's own options replace the useful ones.
REFUSED_OVERRIDES = {
    "functions": "the queue's handler is the function; add arq cron jobs with cron_jobs=",
    "queue_name": "each queue has its own keys",
    "max_jobs": "set the queue's concurrency (JOBQUEUE_<QUEUE>_CONCURRENCY or QueueOptions.concurrency)",
    "job_timeout": "set the queue's timeout (JOBQUEUE_<QUEUE>_TIMEOUT or QueueOptions.timeout)",
    "max_tries": "set the queue's attempts (JOBQUEUE_<QUEUE>_ATTEMPTS or QueueOptions.attempts)",
    "retry_jobs": "jobqueue retries by the queue's attempts and backoff; arq's retry switch would fail every run",
    "allow_abort_jobs": "arq's abort deletes a job without a record",
    "keep_result": "jobqueue keeps completed and failed records by the queue's retention options",
    "keep_result_forever": "jobqueue keeps completed and failed records by the queue's retention options",
    "expires_extra_ms": "a waiting jobqueue job never expires",
    "job_serializer": "jobs are JSON, the same on both sides",
    "job_deserializer": "jobs are JSON, the same on both sides",
    "queue_read_limit": "a worker claims as many jobs as it has free slots",
    "on_job_start": "arq calls it only for its own cron jobs; wrap the handler instead",
    "on_job_end": "arq calls it only for its own cron jobs; wrap the handler instead",
    "after_job_end": "arq calls it only for its own cron jobs; wrap the handler instead",
}

Hook = Callable[[dict[str, Any]], Awaitable[None]]
# The ctx key of the task that stops runs whose job cancel_job cancelled (jobqueue.queue._cancel).
CANCELS_KEY = "jobqueue_cancels"


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
    on_completed: OutcomeHook | None = None,
    on_failed: OutcomeHook | None = None,
    **overrides: Any,
) -> type:
    """A flat arq ``WorkerSettings`` class running ``handler(ctx, payload)`` for ``queue``.

    ``options`` defaults to ``queue_options(queue)`` (per-queue defaults and environment);
    ``on_startup``/``on_shutdown`` run after/before jobqueue's own; ``on_completed(ctx, job, result)``
    and ``on_failed(ctx, job, error)`` run in the worker once per job that ends completed or failed,
    after its outcome is recorded (``job`` is its ``JobInfo``; see ``jobqueue.worker._hooks``);
    ``overrides`` are set on the class as they are (an arq ``Worker`` argument such as ``burst``,
    ``handle_signals``, ``job_completion_wait`` or ``health_check_interval``). Arguments that would
    give arq a say in how the queue's jobs run (``retry_jobs``, ``allow_abort_jobs``, ``max_tries``,
    ...) raise ``ConfigurationError`` naming them.
    """
    q = get_queue(queue)
    refused = sorted(set(overrides) & set(REFUSED_OVERRIDES))
    if refused:
        raise ConfigurationError(
            "build_worker_settings does not take "
            + "; ".join(f"{name} ({REFUSED_OVERRIDES[name]})" for name in refused)
        )
    warn_unknown_variables()  # a misspelt JOBQUEUE_<QUEUE>_<OPTION> would otherwise be silently ignored
    opts = options or queue_options(q.name)
    hooks = WorkerHooks.build(on_completed, on_failed)
    if opts.tick_interval >= opts.worker_lease / 3:
        logger.warning(
            "%s: tick_interval (%gs) is not shorter than a third of worker_lease (%gs): running jobs' leases "
            "may expire and their jobs run again",
            q.name,
            opts.tick_interval,
            opts.worker_lease,
        )
    spec = RunSpec(handler, q.payload_model, q.function)

    async def run_marker(ctx: dict[str, Any]) -> None:  # never run: the Worker runs the queue's jobs itself
        raise RuntimeError(f"{q.function} jobs are run by jobqueue's Worker, not by arq's")

    run_marker.jobqueue_run = spec  # type: ignore[attr-defined]

    async def startup(ctx: dict[str, Any]) -> None:
        if not isinstance(ctx.get(WORKER_KEY), Worker):
            raise ConfigurationError(
                f"{q.name}: this settings class was started by arq's own Worker, which cannot run jobqueue jobs; "
                "start it with the arq command or arq.worker.create_worker after importing jobqueue.worker"
            )
        _arq.follow_arq_logging()
        worker_id = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
        tune_pool(ctx["redis"].connection_pool)
        bound_reads(ctx["redis"].connection_pool)
        state = WorkerState(q, opts, worker_id, ctx["redis"], hooks=hooks)
        ctx[STATE_KEY] = state
        await warn_unless_noeviction(state.redis, q.name)
        try:
            await state.tick()
        except (RedisError, OSError) as exc:
            logger.warning("%s: first worker tick failed, will retry: %s", q.name, _redis_errors.describe(exc))
        state.tick_task = asyncio.create_task(state.run_ticks(), name=f"jobqueue-tick-{q.name}")
        worker_tasks = ctx[WORKER_KEY].tasks
        ctx[CANCELS_KEY] = asyncio.create_task(watch_cancels(state, worker_tasks), name=f"jobqueue-cancels-{q.name}")
        ctx[SCHEDULER_KEY] = start_scheduler(q, ctx["redis"])  # recurring schedules: jobqueue.worker._scheduler
        logger.info(
            "%s: worker %s started (concurrency %d) in jobqueue.worker.Worker, Redis %s",
            q.name,
            worker_id,
            opts.concurrency,
            redact_url(get_settings().queue_redis_url(q.name)),  # which server, when queues have their own
        )
        start_metrics_server(state.queue.name, state.running)
        if on_startup is not None:
            await on_startup(ctx)

    async def shutdown(ctx: dict[str, Any]) -> None:
        try:
            if on_shutdown is not None:
                await on_shutdown(ctx)
        finally:
            await stop_scheduler(ctx.pop(SCHEDULER_KEY, None))
            await cancel_and_wait(ctx.pop(CANCELS_KEY, None))
            state: WorkerState | None = ctx.get(STATE_KEY)
            if state is not None and state.tick_task is not None:
                await cancel_and_wait(state.tick_task)
                state.tick_task = None
                # Our runs have ended (arq waited for them): the worker's entry can go now.
                try:
                    await state.redis.delete(q.keys.worker(state.worker_id))
                    await state.redis.zrem(q.keys.workers, state.worker_id)
                except (RedisError, OSError) as exc:
                    logger.warning("%s: could not remove worker %s: %s", q.name, state.worker_id, exc)

    attrs: dict[str, Any] = {
        "functions": [func(run_marker, name=q.function)],
        "queue_name": q.keys.cron,  # arq's own queue: its cron jobs only
        "health_check_key": q.keys.queue + ":health-check",
        "redis_settings": LazyRedisSettings(q.name),  # the queue's own Redis, if it has one
        "job_serializer": dumps_bytes,
        "job_deserializer": _arq.job_deserializer(q.function, [c.name for c in cron_jobs]),
        "max_jobs": opts.concurrency,
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
