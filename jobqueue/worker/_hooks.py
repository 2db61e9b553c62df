"""Worker hooks: ``on_completed`` and ``on_failed``, called in the worker process once FINISH has
recorded a run's outcome (the seed's ``worker.on('completed')`` and ``worker.on('failed')``).

A hook runs in its own task, bounded by ``HOOK_TIMEOUT_S``; whatever it does (raise, hang, ignore
its cancellation) is logged and changes nothing about the job, whose outcome is already recorded. A
run whose FINISH was stale (its lease had expired and the job was returned: nothing recorded) or
could not reach Redis gets no hook, and neither does a retried attempt or a hand-back.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from jobqueue.backend._json import loads
from jobqueue.constants import HOOK_TIMEOUT_S
from jobqueue.errors import ConfigurationError
from jobqueue.queue.job import JobInfo
from jobqueue.queue.jobinfo import record_info

if TYPE_CHECKING:
    from jobqueue.worker._state import Outcome, Run, WorkerState

logger = logging.getLogger("jobqueue.worker")

OutcomeHook = Callable[[dict[str, Any], JobInfo, Any], Awaitable[Any]]

# Hook tasks that outlived their timeout (they ignored the cancellation): kept so they are not
# collected while running.
_stragglers: set[asyncio.Task[Any]] = set()


@dataclass(frozen=True, slots=True)
class WorkerHooks:
    """The outcome hooks of one settings class."""

    on_completed: OutcomeHook | None = None
    on_failed: OutcomeHook | None = None

    @classmethod
    def build(cls, on_completed: OutcomeHook | None, on_failed: OutcomeHook | None) -> WorkerHooks | None:
        for name, hook in (("on_completed", on_completed), ("on_failed", on_failed)):
            if hook is not None and not callable(hook):
                raise ConfigurationError(f"{name} must be an async callable fn(ctx, job, ...), got {hook!r}")
        if on_completed is None and on_failed is None:
            return None
        return cls(on_completed, on_failed)


async def run_hooks(state: WorkerState, base_ctx: dict[str, Any], run: Run, outcome: Outcome) -> None:
    """Call the hook for ``outcome``, if any, once FINISH recorded it (``outcome.code`` 1 or 2)."""
    hooks: WorkerHooks | None = state.hooks
    if hooks is None or outcome.code not in (1, 2):
        return
    hook = {"completed": hooks.on_completed, "failed": hooks.on_failed}.get(outcome.kind)
    if hook is None:
        return
    task = asyncio.create_task(_call(state, base_ctx, run, outcome, hook), name=f"jobqueue-hook-{run.job_id}")
    try:
        done, _ = await asyncio.wait({task}, timeout=HOOK_TIMEOUT_S)
    except asyncio.CancelledError:  # the worker is stopping: the hook goes with it
        task.cancel()
        raise
    if not done:
        task.cancel()
        _stragglers.add(task)
        task.add_done_callback(_stragglers.discard)
        logger.error(
            "%s: job %s: the on_%s hook did not finish within %gs; it was cancelled",
            state.queue.name,
            run.job_id,
            outcome.kind,
            HOOK_TIMEOUT_S,
        )


async def _call(state: WorkerState, base_ctx: dict[str, Any], run: Run, outcome: Outcome, hook: OutcomeHook) -> None:
    try:
        job = await _finished_info(state, run, outcome)
        if outcome.kind == "completed":
            argument = job.result
            model = state.queue.result_model
            if model is not None and argument is not None:
                argument = model.model_validate(argument)
        else:
            argument = job.error
        await hook({**base_ctx, "job_id": run.job_id, "job_try": run.attempt}, job, argument)
    except asyncio.CancelledError:
        raise
    except Exception:  # a hook's error is reported, never turned into the job's outcome
        logger.exception("%s: job %s: the on_%s hook raised", state.queue.name, run.job_id, outcome.kind)


async def _finished_info(state: WorkerState, run: Run, outcome: Outcome) -> JobInfo:
    """The job as FINISH recorded it: its stored record, or (when a rerun has already replaced it,
    or retention removed it) the record this run sent, without a finish time."""
    record = outcome.record
    keys = state.queue.keys
    pipe = state.redis.pipeline(transaction=True)
    pipe.get(keys.done(run.job_id))
    pipe.get(keys.progress(run.job_id))
    raw, raw_progress = await pipe.execute()
    progress = None
    if raw is not None:
        stored = loads(raw)
        if stored.get("run") == run.token:
            record = stored
            progress = None if raw_progress is None else loads(raw_progress)
    return record_info(state.queue, run.job_id, outcome.kind, record, progress)  # type: ignore[arg-type]
