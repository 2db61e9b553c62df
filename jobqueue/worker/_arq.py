"""What jobqueue relies on in arq 0.28, checked once when a worker is built, and what sits between
arq and jobqueue: the deserializer of arq's cron jobs and the routing of jobqueue's log lines.

Relied on (the whole list; a mismatch stops the worker with a message naming the arq version
jobqueue needs): arq's job key prefix and job layout (``f``, ``a``, ``k``, ``t``, ``et``), which
jobqueue's scripts write so that arq's ``Job`` API reads them; the ``Worker`` arguments the settings
class sets; ``create_worker`` building the class its module names (how ``arq SETTINGS`` comes to run
``jobqueue.worker.Worker``); ``Worker.main`` polling through ``_poll_iteration``; and the ``Worker``
attributes and methods that ``jobqueue.worker._worker`` uses: ``_poll_iteration``, ``heart_beat``,
``_jobs_started``, ``close``, ``functions``, ``tasks``, ``job_counter``, ``max_jobs``,
``allow_pick_jobs``, ``burst``, ``max_burst_jobs``, ``cron_jobs``, ``ctx`` and the
``jobs_complete``/``jobs_failed``/``jobs_retried`` counters.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Iterable
from typing import Any

from jobqueue.backend._json import loads
from jobqueue.constants import ARQ_JOB_PREFIX
from jobqueue.errors import ConfigurationError

ARQ_VERSION_NEEDED = "0.28"
# The payload our deserializer hands the job function in place of a job it could not read.
INVALID_JOB_KEY = "__jobqueue_invalid_job__"

_verified = False

# What jobqueue's Worker relies on in arq's, line by line.
_ARQ_LINES = {
    "main": ["await self._poll_iteration()", "await self.on_startup(self.ctx)"],
    "_poll_iteration": ["await self.heart_beat()"],
    "close": ["await asyncio.gather(*self.tasks.values())"],
    "__init__": [
        "self.job_counter: int = 0",
        "self.tasks: dict[str, asyncio.Task[Any]] = {}",
        "self.allow_pick_jobs: bool = True",
        "self.ctx = ctx or {}",
    ],
    "handle_sig": ["self.main_task and self.main_task.cancel()"],
    "_wait_for_tasks_to_complete": ["self.main_task and self.main_task.cancel()"],
    "_jobs_started": ["return self.jobs_complete + self.jobs_retried + self.jobs_failed + len(self.tasks)"],
}


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
    if getattr(arq.constants, "job_key_prefix", None) != ARQ_JOB_PREFIX:
        problems.append(f"arq's job_key_prefix is not {ARQ_JOB_PREFIX!r}")
    try:
        layout = arq.jobs.deserialize_job_raw(b'{"t":null,"f":"f","a":[{},1],"k":{},"et":5}', deserializer=loads)
        if layout != ("f", [{}, 1], {}, None, 5):
            problems.append("arq reads the job layout differently")
    except Exception as exc:  # any failure here means the layout changed
        problems.append(f"arq cannot read jobqueue's job layout ({exc})")
    from jobqueue.worker._worker import ArqWorker as base  # arq's own class, whatever arq.worker names now

    for method, lines in _ARQ_LINES.items():
        source = inspect.getsource(getattr(base, method))
        if not all(line in source for line in lines):
            problems.append(f"arq's Worker.{method} is not the one jobqueue's Worker was built on")
    if "return Worker(**" not in inspect.getsource(arq.worker.create_worker):
        problems.append("arq's create_worker no longer builds the Worker its module names")
    accepted = set(inspect.signature(base).parameters)
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
