"""Cancelling a job from any process: ``queue.cancel_job`` (the worker's side of it is
``jobqueue.worker._cancel_watch``).

A waiting, delayed or paused job ends at once, in one script: ``failed`` with error type
``JobCancelled`` and the reason in its error. A running job gets a cancel flag; the worker that
owns the run looks for flags of its runs every ``CANCEL_CHECK_S``, cancels the run's handler (which
gets ``asyncio.CancelledError``), and FINISH records the same ``failed``/``JobCancelled`` outcome,
not retried. A flag is for the job, not for one run: should the run's worker die before it saw the
flag (the job returns when its lease expires), or the attempt end in a retry first, the job's next
run is cancelled the same way.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from jobqueue.backend import _scripts
from jobqueue.backend._json import dumps, loads
from jobqueue.backend.connection import get_redis, redis_errors
from jobqueue.constants import CANCEL_FLAG_TTL_S, CANCEL_TRIES, EVENT_TEXT_MAX
from jobqueue.errors import InvalidJobError, JobNotFoundError, JobStateError
from jobqueue.queue.jobinfo import build_info, info_commands

if TYPE_CHECKING:
    from jobqueue.backend._keys import QueueKeys
    from jobqueue.queue.job import JobState

DEFAULT_REASON = "cancelled by request"


class QueueCancel:
    """The cancel side of ``Queue``."""

    name: str
    keys: QueueKeys
    function: str

    # own_id comes from Queue.

    async def cancel_job(self, job_id: str, reason: str | None = None) -> JobState:
        """Cancel a job; returns the state it was in.

        A waiting, delayed or paused job ends ``failed`` at once; a running one is stopped by the
        worker that runs it within about a second (its handler gets ``asyncio.CancelledError``)
        and then ends ``failed``. Either way its ``error_type`` is ``JobCancelled``, its ``error``
        holds ``reason``, and it is not retried. An unknown id raises ``JobNotFoundError``, a job
        that has finished already ``JobStateError``.
        """
        self.own_id(job_id)  # type: ignore[attr-defined]
        if reason is not None and not isinstance(reason, str):
            raise InvalidJobError(f"reason must be a str, got {type(reason).__name__}")
        text = (reason or DEFAULT_REASON)[:EVENT_TEXT_MAX]
        k = self.keys
        for _ in range(CANCEL_TRIES):
            async with redis_errors(queue=self.name):
                pipe = get_redis(self.name).pipeline(transaction=True)
                info_commands(pipe, k, job_id)
                replies = await pipe.execute()
            job = build_info(self, job_id, replies)  # type: ignore[arg-type]
            if job is None:
                raise JobNotFoundError(f"job {job_id} not found in queue {self.name}")
            if job.state in ("completed", "failed"):
                raise JobStateError(f"job {job_id} is {job.state}: a finished job cannot be cancelled")
            raw_job = b"" if job.state == "active" else replies[6]
            args = [k.base, job_id, text, raw_job, self._cancelled_record(job_id, raw_job, job.attempts_made, text)]
            args += [int(CANCEL_FLAG_TTL_S * 1000), job.attempts_made]
            async with redis_errors(queue=self.name):
                code = await _scripts.CANCEL(get_redis(self.name), [k.queue, k.active, k.completed, k.failed], args)
            if code in (1, 2):
                return job.state
            if code == 0:
                raise JobNotFoundError(f"job {job_id} not found in queue {self.name}")
            if code == -1:
                raise JobStateError(
                    f"job {job_id} finished meanwhile: only a job that has not finished can be cancelled"
                )
        raise JobStateError(f"job {job_id} changed {CANCEL_TRIES} times while being cancelled; try again")

    def _cancelled_record(self, job_id: str, raw_job: bytes | None, attempts: int, reason: str) -> str:
        """The failed record of a job cancelled before it ran again, without its closing brace (the
        script adds the finish time in Redis time)."""
        if not raw_job:
            return ""
        try:
            job = loads(raw_job)
            args = job["a"]
        except (ValueError, KeyError, TypeError):
            job, args = {}, [{}, None]
        record = {
            "id": job_id,
            "queue": self.name,
            "function": job.get("f", self.function),
            "payload": args[0] if args else {},
            "priority": args[1] if len(args) > 1 else None,
            "attempts": attempts,
            "enqueued_at": job.get("et"),
            "started_at": None,
            "state": "failed",
            "error": f"JobCancelled: {reason}",
            "error_type": "JobCancelled",
        }
        return dumps(record)[:-1]
