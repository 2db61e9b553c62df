"""The wrapper arq calls for every job: ownership, validation, attempts, timeout, outcome.

Each run takes ownership of its job with START and settles it with FINISH, both scripts that check
the run's token; then it raises arq's ``Retry()`` without a delay, which makes arq only drop its
claim (its in-progress key) and touch nothing else of the job. arq's own timeout is set beyond
ours plus the cancel grace, so it never fires: a run that times out is retried or failed by us.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
import traceback
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from arq.worker import Retry
from pydantic import BaseModel, ValidationError
from redis.exceptions import RedisError

from jobqueue._arq import INVALID_JOB_KEY
from jobqueue._state import Outcome, Run
from jobqueue._validate import describe
from jobqueue.backoff import exponential_backoff
from jobqueue.errors import PermanentJobError, RetryableJobError
from jobqueue.metrics import worker_metrics

if TYPE_CHECKING:
    from jobqueue._state import WorkerState
    from jobqueue.options import QueueOptions

logger = logging.getLogger("jobqueue.worker")

Handler = Callable[[dict[str, Any], Any], Awaitable[Any]]
STATE_KEY = "jobqueue"


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


async def _own(state: WorkerState, job_id: str, token: str, reply: list[int] | None) -> list[int] | None:
    """START (``reply`` when arq's claim already made it), holding arq's claim while the queue is
    paused or the job is not quite due (a clock ahead of Redis'), never longer than the job
    timeout: arq's own timeout must not fire."""
    loop = asyncio.get_running_loop()
    hold_until = loop.time() + min(state.options.timeout, 30.0)
    while True:
        if reply is None:
            reply = await state.start(job_id, token)
        code = int(reply[0])
        if code in (1, 4):
            return reply
        if code == 0:  # removed, or another worker owns it
            return None
        remaining = hold_until - loop.time()
        if remaining <= 0:
            return None
        if code == 2:
            # Paused: keep the slot (arq polls only with a free slot, so no busy loop), then let
            # arq pick again in priority order.
            state.resumed.clear()
            try:
                # Woken by the tick on resume; looks again at least every second regardless.
                async with asyncio.timeout(min(remaining, 1.0)):
                    await state.resumed.wait()
            except TimeoutError:
                reply = None
                continue
            return None
        await asyncio.sleep(min(int(reply[1]) / 1000, remaining, 1.0))
        reply = None


def make_job_function(handler: Handler, payload_model: type[BaseModel]) -> Callable[..., Awaitable[None]]:
    """The coroutine registered with arq for a queue: ``(ctx, payload, priority)``."""

    async def run_job(ctx: dict[str, Any], payload: dict[str, Any], priority: int = 0) -> None:
        state: WorkerState = ctx[STATE_KEY]
        job_id = ctx["job_id"]
        started = state.claims.take_started(job_id) if state.claims is not None else None
        token, reply = started if started is not None else (secrets.token_hex(8), None)
        try:
            reply = await _own(state, job_id, token, reply)
        except (RedisError, OSError) as exc:
            # Never let an error escape to arq, which would delete the job: it stays queued.
            logger.warning("%s: could not start %s (%s); it stays queued", state.queue.name, job_id, exc)
            raise Retry() from exc
        if reply is None:
            raise Retry()  # not ours to run now: arq drops its claim, the job stays as it is
        code, attempt, started_ms = (int(v) for v in reply)
        if not isinstance(priority, int) or not 1 <= priority <= 10:
            priority = state.queue.default_priority
        enqueued = ctx.get("enqueue_time")
        run = Run(job_id, token, attempt, started_ms, priority, int(enqueued.timestamp() * 1000) if enqueued else 0)
        state.running[job_id] = token
        try:
            outcome = await _execute(state, ctx, handler, payload_model, payload, run, interrupted=code == 4)
        except asyncio.CancelledError:
            # A graceful stop (SIGTERM, Ctrl-C) cancels runs: hand the job back; no attempt spent.
            await asyncio.shield(state.finish(run, Outcome("handback")))
            state.running.pop(job_id, None)
            raise
        await state.finish(run, outcome)
        state.running.pop(job_id, None)
        worker_metrics().observe(state.queue.name, outcome.kind, time.monotonic() - run.monotonic_start)
        _log(state, run, outcome)
        raise Retry()  # settled by FINISH: arq must only drop its claim

    run_job.__name__ = run_job.__qualname__ = f"run_{payload_model.__name__}"
    return run_job


async def _execute(
    state: WorkerState,
    ctx: dict[str, Any],
    handler: Handler,
    payload_model: type[BaseModel],
    payload: dict[str, Any],
    run: Run,
    *,
    interrupted: bool,
) -> Outcome:
    options = state.options
    record = {
        "id": run.job_id,
        "queue": state.queue.name,
        "function": state.queue.function,
        "payload": {} if INVALID_JOB_KEY in payload else payload,
        "priority": run.priority,
        "attempts": run.attempt,
        "enqueued_at": run.enqueued_ms,
        "started_at": run.started_ms,
    }

    def failed(text: str, error_type: str, exc: BaseException | None = None) -> Outcome:
        logger.error("%s: job %s failed after %d attempt(s): %s", state.queue.name, run.job_id, run.attempt, text)
        # The dashboard shows it; the end of a long one (the raising frame) is what matters.
        tb = {"traceback": "".join(traceback.format_exception(exc))[-8000:]} if exc is not None else {}
        return Outcome("failed", {**record, "state": "failed", "error": text, "error_type": error_type, **tb})

    if interrupted:
        # Every attempt was used by runs that never reported back: their worker was killed.
        return failed(f"JobInterrupted: the job's worker stopped during all {run.attempt} attempt(s)", "JobInterrupted")
    if INVALID_JOB_KEY in payload:
        return failed(f"InvalidJobError: {payload[INVALID_JOB_KEY]}", "InvalidJobError")
    try:
        model = payload_model.model_validate(payload)
    except ValidationError as exc:
        return failed(f"InvalidJobError: invalid payload: {describe(exc)}", "InvalidJobError")
    # jobqueue's attempt number (a graceful hand-back or a paused claim is not an attempt), and
    # whether a failure now is final — for handlers that keep their own state (reminders do).
    ctx["job_try"] = run.attempt
    ctx["last_attempt"] = run.attempt >= options.attempts

    task = asyncio.create_task(handler(ctx, model))
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
        result = task.result()
        if isinstance(result, BaseModel):
            result = result.model_dump(mode="json")
        return Outcome("completed", {**record, "state": "completed", "result": result})
    if isinstance(exc, PermanentJobError):
        return failed(_error_text(exc), type(exc).__name__, exc)
    if run.attempt >= options.attempts:
        logger.error("%s: job %s failed on its last attempt", state.queue.name, run.job_id, exc_info=exc)
        return failed(_error_text(exc), type(exc).__name__, exc)
    delay = retry_delay(exc, run.attempt, options)
    logger.warning(
        "%s: job %s attempt %d failed (%s); retrying in %.2fs",
        state.queue.name,
        run.job_id,
        run.attempt,
        _error_text(exc),
        delay,
    )
    return Outcome("retry", error=_error_text(exc), delay_ms=int(delay * 1000))


def _log(state: WorkerState, run: Run, outcome: Outcome) -> None:
    """One line per run: queue, id, outcome, how long it ran, which attempt, how long it waited."""
    if logger.isEnabledFor(logging.INFO):
        ran = time.monotonic() - run.monotonic_start
        waited = max(run.started_ms - run.enqueued_ms, 0) / 1000 if run.enqueued_ms else 0.0
        logger.info(
            "%s %s %s in %.3fs attempt=%d waited=%.3fs",
            state.queue.name,
            run.job_id,
            outcome.kind,
            ran,
            run.attempt,
            waited,
        )
