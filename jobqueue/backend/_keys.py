"""Redis key names for one queue."""

from __future__ import annotations

from dataclasses import dataclass

from jobqueue.constants import ARQ_JOB_PREFIX, KEY_PREFIX


@dataclass(frozen=True, slots=True)
class QueueKeys:
    """All keys of queue ``name``; ``base`` prefixes the per-job keys the Lua scripts build."""

    name: str

    @property
    def base(self) -> str:
        return f"{KEY_PREFIX}:{self.name}:"

    @property
    def queue(self) -> str:
        """The queue zset: waiting, delayed and (parked) running jobs."""
        return self.base + "queue"

    @property
    def marker(self) -> str:
        """Where the scripts that make a job ready wake the queue's idle workers (BZPOPMIN)."""
        return self.base + "marker"

    @property
    def cron(self) -> str:
        """arq's own queue zset for the worker's arq cron jobs (the ``queue_name`` arq polls)."""
        return self.base + "cron"

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

    @property
    def events(self) -> str:
        """The queue's events stream (``jobqueue.queue.events``), written by the scripts."""
        return self.base + "events"

    def done(self, job_id: str) -> str:
        return self.base + "done:" + job_id

    def info(self, job_id: str) -> str:
        return self.base + "info:" + job_id

    def progress(self, job_id: str) -> str:
        """The job's last progress value, as JSON (``update_progress``)."""
        return self.base + "progress:" + job_id

    def logs(self, job_id: str) -> str:
        """The job's log lines, a bounded list (``add_job_log``)."""
        return self.base + "logs:" + job_id

    def cancel(self, job_id: str) -> str:
        """Set by ``cancel_job`` while the job runs: its worker cancels the run (``jobqueue.queue._cancel``)."""
        return self.base + "cancel:" + job_id

    def minute(self, minute: int) -> str:
        """Completed/failed/retried counts of one minute (minutes since the epoch)."""
        return self.base + "m:" + str(minute)

    def llm_minute(self, minute: int) -> str:
        """LLM requests, tokens and cost of one minute, by model and lane (``jobqueue.spend``)."""
        return self.base + "llm:m:" + str(minute)

    def llm_hour(self, hour: int) -> str:
        """The same per hour (hours since the epoch), for the last day's figures."""
        return self.base + "llm:h:" + str(hour)

    def worker(self, worker_id: str) -> str:
        return self.base + "worker:" + worker_id

    @staticmethod
    def arq_job(job_id: str) -> str:
        return ARQ_JOB_PREFIX + job_id


@dataclass(frozen=True, slots=True)
class ScheduleKeys:
    """Keys of the recurring schedules (``jobqueue.schedules``), all under ``jq:schedules:``."""

    prefix: str = f"{KEY_PREFIX}:schedules:"

    @property
    def ids(self) -> str:
        """A set of every schedule id."""
        return self.prefix + "ids"

    def schedule(self, schedule_id: str) -> str:
        """A hash: one schedule's definition (JSON) and firing state."""
        return self.prefix + "def:" + schedule_id

    def due(self, queue: str) -> str:
        """A zset of a queue's live schedule ids, scored by their next slot (ms)."""
        return self.prefix + "due:" + queue

    def alive(self, queue: str) -> str:
        """Set, with an expiry, by every pass of a worker's scheduler for ``queue``."""
        return self.prefix + "alive:" + queue


SCHEDULE_KEYS = ScheduleKeys()
