"""One run of a claimed job: validation, attempts, timeout, outcome, FINISH.

Everything between CLAIM and FINISH happens here, inside one ``try``: a handler's error, its timeout,
a result that cannot be serialized and a bug of ours all end as an outcome FINISH records (retried
or failed by the job's attempts), so no run stays active. A graceful stop (the task cancelled)
hands the job back without spending an attempt. Only a FINISH that cannot reach Redis for
``RECORD_RETRY_S`` leaves the job to its lease, which expires and returns it.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
import traceback
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ValidationError

from jobqueue import tracing
from jobqueue._validate import describe
from jobqueue.backend._json import dumps
from jobqueue.constants import MAX_PRIORITY, MIN_PRIORITY
from jobqueue.errors import JobParked, PermanentJobError, RetryableJobError
from jobqueue.metrics import worker_metrics
from jobqueue.worker._arq import INVALID_JOB_KEY, job_deserializer
from jobqueue.worker._hooks import run_hooks
from jobqueue.worker._state import Claimed, Outcome, Run
from jobqueue.worker.backoff import exponential_backoff

if TYPE_CHECKING:
    from jobqueue.worker._state import WorkerState
    from jobqueue.worker.options import QueueOptions

logger = logging.getLogger("jobqueue.worker")

Handler = Callable[[dict[str, Any], Any], Awaitable[Any]]
STATE_KEY = "jobqueue"
# The run a handler's ctx belongs to: update_progress and add_job_log write with its token.
RUN_KEY = "jobqueue_run"


def _error_text(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def retry_delay(exc: BaseException, attempt: int, options: QueueOptions) -> float:
    """Seconds before the next attempt: the error's ``retry_after`` (a 429's Retry-After) when it
    gives one, else the backoff; never more than ``backoff_max``, whatever a server asked."""
    if isinstance(exc, RetryableJobError) and exc.retry_after is not None:
        return max(min(exc.retry_after, options.backoff_max), 0.0)
    return exponential_backoff(
        attempt, base=options.backoff_base, cap=options.backoff_max, jitter=options.backoff_jitter
    )


class RunSpec:
    """What a worker needs to run one queue's jobs: the handler and its payload model. The settings
    class carries it on its registered function; ``jobqueue.worker.Worker`` finds it there."""

    def __init__(self, handler: Handler, payload_model: type[BaseModel], function: str) -> None:
        self.handler = handler
        self.payload_model = payload_model
        self.read_job = job_deserializer(function, [])


async def run_claimed(state: WorkerState, spec: RunSpec, base_ctx: dict[str, Any], claimed: Claimed) -> Outcome:
    """Run one claimed job to its end and record the outcome with FINISH."""
    job = spec.read_job(claimed.job)
    payload, priority = job["a"][0], job["a"][1]
    if not isinstance(priority, int) or not MIN_PRIORITY <= priority <= MAX_PRIORITY:
        priority = state.queue.default_priority
    enqueued_ms = job["et"] if isinstance(job.get("et"), int) else 0
    due_ms = claimed.due_ms or (job["d"] if isinstance(job.get("d"), int) else 0)
    run = Run(claimed.job_id, claimed.token, claimed.attempt, claimed.started_ms, priority, enqueued_ms)
    run.due_ms = due_ms if due_ms > enqueued_ms else 0
    state.running[run.token] = run
    ctx = {
        **base_ctx,
        "job_id": run.job_id,
        "job_try": run.attempt,
        "enqueue_time": dt.datetime.fromtimestamp(enqueued_ms / 1000, dt.UTC),
        "last_attempt": run.attempt >= state.options.attempts,
        RUN_KEY: run,
    }
    otel = tracing.active()
    # Before the handler's task is made: the task runs inside the run's span.
    span = None if otel is None else otel.start_run(state.queue.name, state.worker_id, run, job)
    outcome: Outcome | None = None
    try:
        try:
            outcome = await _execute(state, ctx, spec, payload, run, interrupted=claimed.code == 4)
        except asyncio.CancelledError:
            if run.cancel_reason is None:
                # A graceful stop (SIGTERM, Ctrl-C) cancels runs: hand the job back; no attempt spent.
                await asyncio.shield(state.finish(run, Outcome("handback")))
                raise
            # cancel_job (jobqueue.queue._cancel): the job ends failed, whatever attempts remain.
            outcome = cancelled(state, run, _record(state, run, payload))
        except Exception as exc:  # a bug of ours must not leave the job active: record it like a handler's
            logger.exception("%s: job %s: the worker failed around its handler", state.queue.name, run.job_id)
            outcome = _handler_error(state, run, _record(state, run, payload), exc)
        await state.finish(run, outcome)
    finally:
        state.running.pop(run.token, None)
        if span is not None:
            otel.end_run(span, outcome)
    worker_metrics().observe(state.queue.name, outcome.kind, time.monotonic() - run.monotonic_start)
    _log(state, run, outcome)
    await run_hooks(state, base_ctx, run, outcome)  # after FINISH: the job's outcome is recorded
    return outcome


def _record(state: WorkerState, run: Run, payload: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": run.job_id,
        "queue": state.queue.name,
        "function": state.queue.function,
        "payload": {} if INVALID_JOB_KEY in payload else payload,
        "priority": run.priority,
        "attempts": run.attempt,
        "enqueued_at": run.enqueued_ms,
        **({"due_at": run.due_ms} if run.due_ms else {}),
        "started_at": run.started_ms,
        "run": run.token,  # how FINISH, sent again after a lost reply, knows it recorded this already
    }


def _failed(
    state: WorkerState, run: Run, record: dict[str, Any], text: str, error_type: str, exc: BaseException | None = None
) -> Outcome:
    logger.error("%s: job %s failed after %d attempt(s): %s", state.queue.name, run.job_id, run.attempt, text)
    # The dashboard shows it; the end of a long one (the raising frame) is what matters.
    tb = {"traceback": "".join(traceback.format_exception(exc))[-8000:]} if exc is not None else {}
    return Outcome("failed", {**record, "state": "failed", "error": text, "error_type": error_type, **tb})


def _handler_error(state: WorkerState, run: Run, record: dict[str, Any], exc: BaseException) -> Outcome:
    """A failed attempt: failed for good (permanent error, last attempt) or retried after a delay."""
    options = state.options
    if isinstance(exc, JobParked):
        # Not an attempt: the job waits, delayed, for work done elsewhere (workers.providers.batchlane).
        return Outcome("park", error=_error_text(exc), delay_ms=int(max(exc.recheck_after, 0) * 1000))
    if isinstance(exc, PermanentJobError):
        return _failed(state, run, record, _error_text(exc), type(exc).__name__, exc)
    if run.attempt >= options.attempts:
        logger.error("%s: job %s failed on its last attempt", state.queue.name, run.job_id, exc_info=exc)
        return _failed(state, run, record, _error_text(exc), type(exc).__name__, exc)
    delay = retry_delay(exc, run.attempt, options)
    logger.warning(
        "%s: job %s attempt %d failed (%s); retrying in %.2fs",
        state.queue.name,
        run.job_id,
        run.attempt,
        _error_text(exc),
        delay,
    )
    return Outcome("retry", error=_error_text(exc), delay_ms=int(delay * 1000), error_type=type(exc).__name__)


async def _execute(
    state: WorkerState,
    ctx: dict[str, Any],
    spec: RunSpec,
    payload: dict[str, Any],
    run: Run,
    *,
    interrupted: bool,
) -> Outcome:
    options = state.options
    record = _record(state, run, payload)
    if interrupted:
        # Every attempt was used by runs that never reported back: their worker was killed.
        text = f"JobInterrupted: the job's worker stopped during all {run.attempt} attempt(s)"
        return _failed(state, run, record, text, "JobInterrupted")
    if INVALID_JOB_KEY in payload:
        return _failed(state, run, record, f"InvalidJobError: {payload[INVALID_JOB_KEY]}", "InvalidJobError")
    try:
        model = spec.payload_model.model_validate(payload)
    except ValidationError as exc:
        return _failed(state, run, record, f"InvalidJobError: invalid payload: {describe(exc)}", "InvalidJobError")

    task = asyncio.create_task(spec.handler(ctx, model))
    try:
        done, _ = await asyncio.wait({task}, timeout=options.timeout)
    except asyncio.CancelledError:
        task.cancel()
        await asyncio.wait({task}, timeout=options.cancel_grace)
        raise
    if not done:
        task.cancel()
        await asyncio.wait({task}, timeout=options.cancel_grace)
        if not task.done():
            logger.error(
                "%s: job %s still running %gs after its timeout was cancelled; recording the timeout anyway",
                state.queue.name,
                run.job_id,
                options.cancel_grace,
            )
        exc: BaseException | None = TimeoutError(f"the job ran longer than its timeout ({options.timeout:g}s)")
    elif task.cancelled():
        exc = asyncio.CancelledError("the job's handler was cancelled")
    else:
        exc = task.exception()

    if exc is None:
        try:
            result = task.result()
            if isinstance(result, BaseModel):
                result = result.model_dump(mode="json")
            completed = {**record, "state": "completed", "result": result}
            body = dumps(completed)
        except Exception as error:  # a result that cannot be stored fails this attempt, like a handler error
            exc = ResultError(f"the job's result cannot be stored as JSON: {_error_text(error)}")
            exc.__cause__ = error
        else:
            return Outcome("completed", completed, body=body)
    return _handler_error(state, run, record, exc)


def cancelled(state: WorkerState, run: Run, record: dict[str, Any]) -> Outcome:
    task = asyncio.current_task()
    if task is not None:
        task.uncancel()  # the cancellation was cancel_job's, handled here: the run goes on to FINISH
    return _failed(state, run, record, f"JobCancelled: {run.cancel_reason}", "JobCancelled")


class ResultError(Exception):
    """A handler returned a result that cannot be serialized to JSON."""


def _log(state: WorkerState, run: Run, outcome: Outcome) -> None:
    """One line per run: queue, id, outcome, how long it ran, which attempt, and how long it waited
    once due: from its enqueue, or from the end of its delay, its schedule's slot or its backoff."""
    if logger.isEnabledFor(logging.INFO):
        ran = time.monotonic() - run.monotonic_start
        ready_ms = max(run.enqueued_ms, run.due_ms)
        waited = max(run.started_ms - ready_ms, 0) / 1000 if ready_ms else 0.0
        logger.info(
            "%s %s %s in %.3fs attempt=%d waited=%.3fs",
            state.queue.name,
            run.job_id,
            outcome.kind,
            ran,
            run.attempt,
            waited,
        )
