"""What jobqueue relies on in arq 0.28, checked once when a worker is built, and the two pieces
that sit between arq and our job function: the job deserializer and arq's log lines.

Relied on: arq's key prefixes; its job layout (``f``, ``a``, ``k``, ``t``, ``et``); that a job
function raising ``Retry()`` without a delay makes arq only delete its claim (``in-progress``) and
leave the job's keys and score alone; the ``Worker`` arguments the settings class sets. A mismatch
stops the worker with a message naming the arq version jobqueue needs.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Iterable
from typing import Any

from redis.asyncio.client import Pipeline
from redis.exceptions import RedisError, WatchError

from jobqueue._json import loads
from jobqueue.constants import ARQ_IN_PROGRESS_PREFIX, ARQ_JOB_PREFIX, ARQ_RETRY_PREFIX
from jobqueue.errors import ConfigurationError

ARQ_VERSION_NEEDED = "0.28"
# The payload our deserializer hands the job function in place of a job it could not read.
INVALID_JOB_KEY = "__jobqueue_invalid_job__"

_verified = False


def verify_arq(worker_arguments: Iterable[str]) -> None:
    """Raise ``ConfigurationError`` when the installed arq is not the one jobqueue was built on."""
    global _verified
    if _verified:
        return
    import arq.constants
    import arq.jobs
    import arq.version
    import arq.worker

    problems = []
    if not arq.version.VERSION.startswith(ARQ_VERSION_NEEDED + "."):
        problems.append(f"arq {arq.version.VERSION} is installed")
    for name, ours in (
        ("job_key_prefix", ARQ_JOB_PREFIX),
        ("in_progress_key_prefix", ARQ_IN_PROGRESS_PREFIX),
        ("retry_key_prefix", ARQ_RETRY_PREFIX),
    ):
        if getattr(arq.constants, name, None) != ours:
            problems.append(f"arq's {name} is not {ours!r}")
    try:
        layout = arq.jobs.deserialize_job_raw(b'{"t":null,"f":"f","a":[{},1],"k":{},"et":5}', deserializer=loads)
        if layout != ("f", [{}, 1], {}, None, 5):
            problems.append("arq reads the job layout differently")
    except Exception as exc:  # any failure here means the layout changed
        problems.append(f"arq cannot read jobqueue's job layout ({exc})")
    if "await pipe.watch(in_progress_key)" not in inspect.getsource(arq.worker.Worker.start_jobs):
        problems.append("arq's claim (Worker.start_jobs) no longer WATCHes the in-progress key")
    if arq.worker.Retry().defer_score is not None:
        problems.append("arq's Retry() without a delay moves the job")
    finish = inspect.signature(arq.worker.Worker.finish_job).parameters
    if list(finish)[1:] != [
        "job_id",
        "finish",
        "result_data",
        "result_timeout_s",
        "keep_result_forever",
        "incr_score",
        "keep_in_progress",
    ]:
        problems.append("arq's finish_job changed")
    accepted = set(inspect.signature(arq.worker.Worker).parameters)
    unknown = sorted(set(worker_arguments) - accepted)
    if unknown:
        problems.append(f"arq's Worker does not take {', '.join(unknown)}")
    if problems:
        raise ConfigurationError(
            f"jobqueue needs arq {ARQ_VERSION_NEEDED}.x (pip install 'arq=={ARQ_VERSION_NEEDED}.*'): "
            + "; ".join(problems)
        )
    _verified = True


def _invalid(function: str, reason: str) -> dict[str, Any]:
    return {"t": None, "f": function, "a": [{INVALID_JOB_KEY: reason}, 0], "k": {}, "et": 0}


def job_deserializer(function: str, others: Iterable[str]) -> Callable[[bytes], dict[str, Any]]:
    """arq's job deserializer for one queue's workers: JSON only, and never raising.

    A job key holding something else (garbage, a pickle, JSON of the wrong shape, an unknown
    function) reaches our job function as an invalid job, which fails it with a clear error and
    a record, instead of arq dropping it without one. No code in Redis is ever run.
    """
    known = {function, *others}

    def deserialize(raw: bytes) -> dict[str, Any]:
        try:
            job = loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            return _invalid(function, f"the job stored in Redis is not JSON ({type(exc).__name__})")
        if not (
            isinstance(job, dict)
            and isinstance(job.get("f"), str)
            and isinstance(job.get("a"), list)
            and isinstance(job.get("k"), dict)
            and isinstance(job.get("et"), int)
            and "t" in job
        ):
            return _invalid(function, "the job stored in Redis does not have arq's job layout")
        if job["f"] not in known:
            return _invalid(function, f"the job names a function this worker does not have: {job['f']!r}")
        if job["f"] == function and (len(job["a"]) != 2 or not isinstance(job["a"][0], dict) or job["k"]):
            return _invalid(function, "the job's arguments are not (payload, priority)")
        return job

    return deserialize


class ArqLogFilter(logging.Filter):
    """Drops arq's start and "retrying" lines for our job function: every run ends with ``Retry()``
    (our scripts settle the job), and arq measures "delayed" from priority-band scores far in the
    past. jobqueue logs one line per run instead (``jobqueue.worker``)."""

    def __init__(self, function: str) -> None:
        super().__init__()
        self._suffix = f":{function}"

    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.msg if isinstance(record.msg, str) else ""
        if "→" not in msg and "↻" not in msg:
            return True
        return not any(isinstance(a, str) and a.endswith(self._suffix) for a in record.args or ())


def follow_arq_logging() -> None:
    """Print jobqueue's worker lines where arq prints its own: ``arq``'s CLI configures handlers for
    its ``arq`` logger only, so without this jobqueue's per-run INFO lines would go nowhere. A host
    that configured logging itself (a root handler, or handlers on ``jobqueue``) is left alone."""
    ours, arq_logger = logging.getLogger("jobqueue"), logging.getLogger("arq")
    if ours.handlers or logging.getLogger().handlers or not arq_logger.handlers:
        return
    for handler in arq_logger.handlers:
        ours.addHandler(handler)
    ours.setLevel(arq_logger.level or logging.INFO)
    ours.propagate = False


def install_log_filter(function: str) -> None:
    log = logging.getLogger("arq.worker")
    if not any(isinstance(f, ArqLogFilter) and f._suffix == f":{function}" for f in log.filters):
        log.addFilter(ArqLogFilter(function))


class ClaimSafePipeline(Pipeline):
    """arq's claim (``Worker.start_jobs``) WATCHes the job's in-progress key and reads two values
    before MULTI, outside its ``try``: Redis going away, busy or out of memory there (redis-py then
    raises ``WatchError``) would end the worker. Here such an error reads as "claimed elsewhere",
    so arq skips the job this poll. A claim made without the WATCH would still be safe: START
    lets one run own a job."""

    _broken = False

    async def immediate_execute_command(self, *args: Any, **options: Any) -> Any:
        if self._broken:
            return 1
        try:
            return await super().immediate_execute_command(*args, **options)
        except (WatchError, RedisError, OSError) as exc:
            self._broken = True
            logging.getLogger("jobqueue.worker").warning("a claim was skipped: Redis failed while watching (%s)", exc)
            return 1


def make_claims_safe(pool: Any) -> None:
    """Give arq's pool (``ctx["redis"]``) pipelines that cannot end the worker in a claim."""

    def pipeline(transaction: bool = True, shard_hint: str | None = None) -> Pipeline:
        return ClaimSafePipeline(pool.connection_pool, pool.response_callbacks, transaction, shard_hint)

    pool.pipeline = pipeline
