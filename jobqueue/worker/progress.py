"""Progress and log lines from a running job's handler (BullMQ's ``job.updateProgress`` and ``job.log``).

Both are written by one small script that checks the run's owner token first: a run whose lease
expired (its job returned to the queue, maybe running elsewhere now) writes nothing. The progress
is kept with the job (``JobInfo.progress``) and each change is a ``progress`` event; the last
``LOG_LINES_KEPT`` log lines are kept (``queue.get_job_logs``). Both go wherever the job's record
goes: retention, ``clean``, ``remove_job``, ``drain``, or a new job under the same id.
"""

from __future__ import annotations

import json
import math
from typing import Any

from jobqueue.backend import _scripts
from jobqueue.backend.connection import redis_errors
from jobqueue.constants import LOG_LINE_MAX, LOG_LINES_KEPT, PROGRESS_MAX_BYTES
from jobqueue.errors import InvalidJobError
from jobqueue.worker._runner import RUN_KEY, STATE_KEY
from jobqueue.worker._state import Run, WorkerState


async def update_progress(ctx: dict[str, Any], value: int | float | dict[str, Any]) -> bool:
    """Record the running job's progress: a number from 0 to 100, or a small JSON object.

    ``ctx`` is the handler's. Returns False when this run no longer owns its job (its lease
    expired): nothing was written. A value of any other kind raises ``InvalidJobError``.
    """
    state, run = _running(ctx, "update_progress")
    return await _write(state, run, "progress", _progress_json(value))


async def add_job_log(ctx: dict[str, Any], message: str) -> bool:
    """Append a line to the running job's log (the last ``LOG_LINES_KEPT`` are kept, each cut to
    ``LOG_LINE_MAX`` characters). Returns False when this run no longer owns its job."""
    state, run = _running(ctx, "add_job_log")
    if not isinstance(message, str):
        raise InvalidJobError(f"add_job_log takes a str message, got {type(message).__name__}")
    return await _write(state, run, "log", message[:LOG_LINE_MAX])


def _running(ctx: Any, what: str) -> tuple[WorkerState, Run]:
    state = ctx.get(STATE_KEY) if isinstance(ctx, dict) else None
    run = ctx.get(RUN_KEY) if isinstance(ctx, dict) else None
    if not isinstance(state, WorkerState) or not isinstance(run, Run):
        raise InvalidJobError(f"{what} takes the ctx of a job run by a jobqueue worker")
    return state, run


def _progress_json(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float | dict):
        raise InvalidJobError(f"progress must be a number from 0 to 100 or a JSON object, got {type(value).__name__}")
    if isinstance(value, dict):
        try:
            text = json.dumps(value, separators=(",", ":"), allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise InvalidJobError(f"progress must be a JSON object: {exc}") from None
        size = len(text.encode())
        if size > PROGRESS_MAX_BYTES:
            raise InvalidJobError(f"progress must be at most {PROGRESS_MAX_BYTES} bytes as JSON, got {size}")
        return text
    if not math.isfinite(value) or not 0 <= value <= 100:
        raise InvalidJobError(f"progress must be a number from 0 to 100, got {value!r}")
    return json.dumps(value)


async def _write(state: WorkerState, run: Run, kind: str, value: str) -> bool:
    k = state.queue.keys
    args = [k.base, run.job_id, run.token, kind, value, run.attempt, LOG_LINES_KEPT]
    async with redis_errors(queue=state.queue.name):
        code = await _scripts.PROGRESS(state.redis, [k.active], args)
    return int(code) == 1
