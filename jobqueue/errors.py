"""The one error tree of jobqueue.

    JobQueueError
    ├── InvalidJobError            bad input, raised before anything is written (also a ValueError)
    ├── RedisUnavailableError      Redis could not be reached, or cannot serve now (BUSY, LOADING,
    │   │                          READONLY after a failover); names the password-free URL
    │   └── NotReplicatedError     JOBQUEUE_ENQUEUE_REPLICAS: the jobs are written on the primary,
    │                              but too few replicas confirmed them in time (safe to retry)
    ├── RedisCommandError          Redis refused a command (out of memory, no permission, ...)
    ├── JobNotFoundError           no job with that id in that queue (also a KeyError)
    ├── JobStateError              the job's state forbids the operation (e.g. removing an active job)
    ├── JobFailedError             ``handle.result()`` of a job that failed; carries error and attempts
    ├── JobResultTimeoutError      ``handle.result(timeout=...)`` gave up waiting (also a TimeoutError)
    └── JobError                   raised by job functions to steer retries
        ├── PermanentJobError      retrying cannot help: the job fails at once
        │   ├── ConfigurationError a setting is missing or wrong (names the variable to set)
        │   └── EntityNotFoundError the row the job is about does not exist
        ├── RetryableJobError      retry, optionally after ``retry_after`` seconds (e.g. a 429)
        └── JobParked              not a failure: the job waits (delayed, no attempt spent) for
                                   ``recheck_after`` seconds or until something promotes it

Redis errors are wrapped at the boundary (``raise RedisUnavailableError(...) from exc``) so callers
only ever need to catch ``JobQueueError``.
"""

from __future__ import annotations

from typing import Any


class JobQueueError(Exception):
    """Base class of every error jobqueue raises."""


class InvalidJobError(JobQueueError, ValueError):
    """The arguments of an enqueue or queue call are invalid; nothing was written."""


class RedisUnavailableError(JobQueueError, ConnectionError):
    """Redis did not answer; ``url`` is the configured URL with any password removed."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"Redis is unavailable at {url}: {reason}")
        self.url = url
        self.reason = reason


class NotReplicatedError(RedisUnavailableError):
    """An enqueue under ``JOBQUEUE_ENQUEUE_REPLICAS=N``: the jobs ARE written on the primary, but
    only ``acknowledged`` of the ``wanted`` replicas confirmed the write within the timeout, so a
    failover now could lose them. Enqueueing the same jobs again is safe (ids deduplicate: the
    retry answers ``created=False`` and waits for the replicas again); ``handles`` are the handles
    the enqueue would have returned."""

    def __init__(self, url: str, wanted: int, acknowledged: int, timeout: float, handles: list[Any]) -> None:
        super().__init__(
            url,
            f"the job(s) are written on the primary, but {acknowledged} of {wanted} replica(s) confirmed "
            f"them within {timeout:g}s (JOBQUEUE_ENQUEUE_REPLICAS); enqueue them again to wait once more",
        )
        self.wanted = wanted
        self.acknowledged = acknowledged
        self.handles = handles


class RedisCommandError(JobQueueError):
    """Redis answered a command with an error that waiting will not fix (e.g. OOM, NOPERM)."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"Redis at {url} refused a command: {reason}")
        self.url = url
        self.reason = reason


class JobNotFoundError(JobQueueError, KeyError):
    """No job with this id exists in this queue."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "job not found"


class JobStateError(JobQueueError):
    """The job is in a state that does not allow the operation."""


class JobFailedError(JobQueueError):
    """The job failed; ``error`` is its last error and ``attempts`` how many runs it had."""

    def __init__(self, job_id: str, error: str, attempts: int) -> None:
        super().__init__(f"job {job_id} failed after {attempts} attempt(s): {error}")
        self.job_id = job_id
        self.error = error
        self.attempts = attempts


class JobResultTimeoutError(JobQueueError, TimeoutError):
    """The job did not finish within the time ``result()`` was given."""


class JobError(JobQueueError):
    """Raised inside a job function to tell the worker how to treat the failure."""


class PermanentJobError(JobError):
    """Retrying cannot fix this: the job fails at once, whatever attempts remain."""


class ConfigurationError(PermanentJobError):
    """A required setting is missing or invalid; the message names the variable."""


class EntityNotFoundError(PermanentJobError):
    """The entity the job is about does not exist."""


class RetryableJobError(JobError):
    """A transient failure; ``retry_after`` (seconds) overrides the backoff when given."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class JobParked(JobError):
    """Raised by a job function whose work goes on elsewhere (a Batch API request): the run ends
    without an outcome or an attempt spent, and the job waits as a delayed job until it is promoted
    (by whatever finishes that work) or ``recheck_after`` seconds have passed, then runs again."""

    def __init__(self, message: str, *, recheck_after: float) -> None:
        super().__init__(message)
        self.recheck_after = recheck_after
