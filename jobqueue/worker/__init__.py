"""The worker: ``build_worker_settings`` builds the arq settings classes whose workers run one
queue, and ``Worker`` (arq's ``Worker`` subclass) claims, runs and finishes that queue's jobs.

Inside: the settings builder (``builder``), the run loop (``_worker``), one run of a job
(``_runner``), the process's state (``_state``), outcome hooks, the schedule ticker, the pieces of
arq it relies on (``_arq``), per-queue options, backoff and progress reports from inside a job.
"""

from jobqueue.worker._worker import Worker
from jobqueue.worker.builder import build_worker_settings

__all__ = ["Worker", "build_worker_settings"]
