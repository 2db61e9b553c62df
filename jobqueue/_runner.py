"""The wrapper arq calls for every job: validation, attempts, backoff and the outcome record."""

from __future__ import annotations

import asyncio
import logging
import time
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from arq.worker import Retry
from pydantic import BaseModel, ValidationError

from jobqueue import _scripts
from jobqueue._json import dumps
from jobqueue._validate import describe
from jobqueue.backoff import exponential_backoff
from jobqueue.constants import PRIORITY_BAND
from jobqueue.errors import PermanentJobError, RetryableJobError

if TYPE_CHECKING:
    from jobqueue.options import QueueOptions
    from jobqueue.worker import WorkerState

logger = logging.getLogger("jobqueue.worker")

Handler = Callable[[dict[str, Any], Any], Awaitable[Any]]
STATE_KEY = "jobqueue"
OUTCOME_KEY = "jobqueue_outcome"


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass(slots=True)
class Outcome:
    """What one run ended with; written to Redis by ``after_job_end`` once arq has finished."""

    kind: str  # completed | failed | retry | bounced | interrupted
    priority: int
    attempt: int
    record: dict[str, Any] = field(default_factory=dict)
    error: str = ""
    due_ms: int = 0


def _error_text(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError) and not str(exc):
        return "TimeoutError: the job ran longer than its timeout"
    return f"{type(exc).__name__}: {exc}"


def retry_delay(exc: BaseException, attempt: int, options: QueueOptions) -> float:
    """Seconds before the next attempt: the error's ``retry_after`` (a 429's Retry-After) when it
    gives one, else the backoff; never more than ``backoff_max``, whatever a server asked."""
    if isinstance(exc, RetryableJobError) and exc.retry_after is not None:
        return max(min(exc.retry_after, options.backoff_max), 0.0)
    return exponential_backoff(
        attempt, base=options.backoff_base, cap=options.backoff_max, jitter=options.backoff_jitter
    )


def make_job_function(handler: Handler, payload_model: type[BaseModel]) -> Callable[..., Awaitable[None]]:
    """The coroutine registered with arq for a queue: ``(ctx, payload, priority)``."""

    async def run(ctx: dict[str, Any], payload: dict[str, Any], priority: int = 0) -> None:
        state: WorkerState = ctx[STATE_KEY]
        job_id, attempt = ctx["job_id"], ctx["job_try"]
        started = now_ms()
        outcome = ctx[OUTCOME_KEY] = Outcome("interrupted", priority or state.queue.default_priority, attempt)
        allowed = await write_start(state, job_id, f"{state.worker_id}|{started}")
        if not allowed:
            # Paused between arq's poll and this start: hand the job back untouched.
            outcome.kind = "bounced"
            raise Retry()

        record = {
            "id": job_id,
            "queue": state.queue.name,
            "function": state.queue.function,
            "payload": payload,
            "priority": outcome.priority,
            "attempts": attempt,
            "enqueued_at": int(ctx["enqueue_time"].timestamp() * 1000),
            "started_at": started,
        }
        options = state.options
        # Handlers that keep their own state (a reminder's schedule row) need to know this.
        ctx["last_attempt"] = attempt >= options.attempts

        def finish(kind: str, **extra: Any) -> None:
            outcome.kind = kind
            outcome.record = {**record, "state": kind, "finished_at": now_ms(), **extra}

        def fail(exc: BaseException | str, error_type: str) -> None:
            text = exc if isinstance(exc, str) else _error_text(exc)
            # The dashboard shows it; the end of a long one (the raising frame) is what matters.
            tb = {} if isinstance(exc, str) else {"traceback": "".join(traceback.format_exception(exc))[-8000:]}
            finish("failed", error=text, error_type=error_type, **tb)
            logger.error("job %s failed after %d attempt(s): %s", job_id, attempt, text)

        if attempt > options.attempts:
            # The previous runs never reported back: their worker was killed or arq timed them out.
            fail(
                f"JobInterrupted: the job's worker stopped during all {attempt - 1} attempt(s)",
                "JobInterrupted",
            )
            return None
        try:
            model = payload_model.model_validate(payload)
        except ValidationError as exc:
            fail(f"InvalidJobError: invalid payload: {describe(exc)}", "InvalidJobError")
            return None
        try:
            async with asyncio.timeout(options.timeout):
                result = await handler(ctx, model)
        except PermanentJobError as exc:
            fail(exc, type(exc).__name__)
        except asyncio.CancelledError:
            outcome.kind = "interrupted"
            raise
        except Exception as exc:  # any other error costs one attempt; attempts are bounded
            if attempt >= options.attempts:
                logger.exception("job %s failed on its last attempt", job_id)
                fail(exc, type(exc).__name__)
                return None
            delay = retry_delay(exc, attempt, options)
            outcome.kind, outcome.error = "retry", _error_text(exc)
            outcome.due_ms = now_ms() + int(delay * 1000)
            logger.warning("job %s attempt %d failed (%s); retrying in %.2fs", job_id, attempt, outcome.error, delay)
            raise Retry(defer=delay) from exc
        else:
            if isinstance(result, BaseModel):
                result = result.model_dump(mode="json")
            finish("completed", result=result)
        return None

    run.__name__ = run.__qualname__ = f"run_{payload_model.__name__}"
    return run


async def write_start(state: WorkerState, job_id: str, owner: str) -> int:
    """Mark a run active (``owner`` is ``"<worker id>|<start ms>"``); 0 when the queue is paused."""
    k = state.queue.keys
    return await _scripts.START(state.redis, [k.active, k.paused], [job_id, owner])


async def write_outcome(state: WorkerState, job_id: str, outcome: Outcome) -> int:
    """Write a run's outcome, with retention and a pending rerun, in one script call."""
    o, k = state.options, state.queue.keys
    body = dumps(outcome.record) if outcome.record else outcome.error
    args: list[Any] = [
        k.base,
        PRIORITY_BAND,
        now_ms(),
        o.keep_completed,
        int(o.keep_completed_age * 1000),
        o.keep_failed,
        int(o.keep_failed_age * 1000),
        job_id,
        outcome.kind,
        body,
        outcome.due_ms,
        outcome.priority,
        outcome.attempt,
    ]
    return await _scripts.FINISH(state.redis, [k.queue, k.active, k.seq, k.completed, k.failed], args)
