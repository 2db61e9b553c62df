"""Redis key names for one queue."""

from __future__ import annotations

from dataclasses import dataclass

from jobqueue.constants import ARQ_IN_PROGRESS_PREFIX, ARQ_JOB_PREFIX, ARQ_RETRY_PREFIX, KEY_PREFIX


@dataclass(frozen=True, slots=True)
class QueueKeys:
    """All keys of queue ``name``; ``base`` prefixes the per-job keys the Lua scripts build."""

    name: str

    @property
    def base(self) -> str:
        return f"{KEY_PREFIX}:{self.name}:"

    @property
    def queue(self) -> str:
        """arq's queue zset (the ``queue_name`` the workers poll)."""
        return self.base + "queue"

    @property
    def active(self) -> str:
        return self.base + "active"

    @property
    def seq(self) -> str:
        return self.base + "seq"

    @property
    def completed(self) -> str:
        return self.base + "completed"

    @property
    def failed(self) -> str:
        return self.base + "failed"

    @property
    def paused(self) -> str:
        return self.base + "paused"

    @property
    def workers(self) -> str:
        return self.base + "workers"

    def done(self, job_id: str) -> str:
        return self.base + "done:" + job_id

    def info(self, job_id: str) -> str:
        return self.base + "info:" + job_id

    def minute(self, minute: int) -> str:
        """Completed/failed/retried counts of one minute (minutes since the epoch)."""
        return self.base + "m:" + str(minute)

    def worker(self, worker_id: str) -> str:
        return self.base + "worker:" + worker_id

    @staticmethod
    def arq_job(job_id: str) -> str:
        return ARQ_JOB_PREFIX + job_id

    @staticmethod
    def arq_in_progress(job_id: str) -> str:
        return ARQ_IN_PROGRESS_PREFIX + job_id

    @staticmethod
    def arq_retry(job_id: str) -> str:
        return ARQ_RETRY_PREFIX + job_id
