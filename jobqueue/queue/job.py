"""Jobs as the rest of the queue layer passes them around: prepared for writing, the handle an
enqueue returns, the snapshot inspection returns.

Nothing here imports ``jobqueue.queue.queue``: a handle and a snapshot need only what
``JobSource`` names of their queue.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

JobState = Literal["waiting", "delayed", "active", "completed", "failed", "paused", "unknown"]
CountKind = Literal["waiting", "active", "completed", "failed", "delayed", "paused"]
CleanState = Literal["completed", "failed", "waiting", "delayed"]


class JobSource(Protocol):
    """What a handle and a snapshot need of their queue (``jobqueue.queue.queue.Queue`` is one)."""

    @property
    def name(self) -> str: ...

    @property
    def function(self) -> str: ...

    async def get_job_state(self, job_id: str) -> JobState: ...

    async def wait_for_result(self, job_id: str, *, timeout: float | None = None) -> Any: ...


@dataclass(frozen=True, slots=True)
class PreparedJob:
    """A validated job, ready to be written: the arguments of one enqueue script call."""

    job_id: str
    job_head: str  # arq's job JSON without its closing "et"/"d" part
    priority: int
    when: str  # "0" now, "+<ms>" after a delay, "@<epoch ms>" at a time


@dataclass(frozen=True, slots=True)
class JobHandle:
    """The answer to an enqueue.

    ``created`` is False when a job with this id already existed (nothing new was written);
    ``rerun`` is True when that job was active: it will run once more, with this payload, after
    the current run ends.
    """

    job_id: str
    queue_name: str
    created: bool
    rerun: bool = False
    _queue: JobSource = field(repr=False, compare=False, default=None)  # type: ignore[assignment]

    async def status(self) -> JobState:
        """The job's state now."""
        return await self._queue.get_job_state(self.job_id)

    async def result(self, timeout: float | None = None) -> Any:
        """Wait for the job to finish and return its typed result.

        Raises ``JobFailedError`` when it failed, ``JobResultTimeoutError`` after ``timeout`` seconds
        (None waits as long as it takes), ``JobNotFoundError`` when the job no longer exists.
        """
        return await self._queue.wait_for_result(self.job_id, timeout=timeout)


def ms_to_datetime(ms: float | int | None) -> dt.datetime | None:
    if ms is None:
        return None
    return dt.datetime.fromtimestamp(float(ms) / 1000, tz=dt.UTC)


@dataclass(frozen=True, slots=True)
class JobInfo:
    """A snapshot of one job, as ``get_job``/``get_jobs`` and the dashboard show it."""

    job_id: str
    queue_name: str
    state: JobState
    function: str
    payload: dict[str, Any]
    priority: int | None
    attempts_made: int
    enqueued_at: dt.datetime | None = None
    due_at: dt.datetime | None = None
    started_at: dt.datetime | None = None
    finished_at: dt.datetime | None = None
    error: str | None = None
    error_type: str | None = None
    result: Any = None
    traceback: str | None = None
    progress: Any = None  # the last update_progress value: a number from 0 to 100 or a JSON object

    @property
    def waited(self) -> float | None:
        """Seconds from when the job was due to when its (last) run started: from ``due_at`` when it
        had one (a delay, a schedule, a retry's backoff, a promotion), else from ``enqueued_at``.
        None until it starts."""
        ready = self.due_at or self.enqueued_at
        if self.started_at is None or ready is None:
            return None
        return max((self.started_at - ready).total_seconds(), 0.0)

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form (datetimes as ISO-8601), with ``waited``."""
        out: dict[str, Any] = {}
        for name in self.__slots__:
            value = getattr(self, name)
            out[name] = value.isoformat() if isinstance(value, dt.datetime) else value
        out["waited"] = self.waited
        return out
