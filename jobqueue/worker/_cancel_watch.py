"""The worker's side of ``queue.cancel_job`` (``jobqueue.queue._cancel``): a running job's cancel
flag, seen by the worker that owns the run, cancels the run's handler."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from redis.exceptions import RedisError

from jobqueue.backend import _redis_errors
from jobqueue.constants import CANCEL_CHECK_S
from jobqueue.worker._state import WorkerState

logger = logging.getLogger("jobqueue.worker")


async def watch_cancels(state: WorkerState, tasks: dict[Any, asyncio.Task[Any]]) -> None:
    """A worker's side of cancel_job: every ``CANCEL_CHECK_S``, cancel the runs whose job has a
    cancel flag (``tasks`` is the arq Worker's, keyed by run token)."""
    keys = state.queue.keys
    while True:
        await asyncio.sleep(CANCEL_CHECK_S)
        runs = [run for run in list(state.running.values()) if run.cancel_reason is None]
        if not runs:
            continue
        try:
            flags = await state.redis.mget([keys.cancel(run.job_id) for run in runs])
        except (RedisError, *_redis_errors.TRANSIENT) as exc:
            logger.debug("%s: looking for cancelled runs failed: %s", state.queue.name, exc)
            continue
        for run, flag in zip(runs, flags, strict=True):
            task = tasks.get(run.token)
            if flag is None or task is None or task.done() or run.token not in state.running:
                continue
            run.cancel_reason = flag.decode(errors="replace")
            logger.warning("%s: job %s cancelled while running: %s", state.queue.name, run.job_id, run.cancel_reason)
            task.cancel()
