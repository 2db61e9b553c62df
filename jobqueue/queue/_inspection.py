"""Reading a queue: exact counts, jobs by state, the per-minute history and the live workers."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from jobqueue import _validate
from jobqueue.backend import _scripts
from jobqueue.backend._json import loads
from jobqueue.backend.connection import get_redis, redis_errors
from jobqueue.constants import METRICS_KEEP_MINUTES, PARKED_SCORE
from jobqueue.errors import InvalidJobError
from jobqueue.queue.job import CountKind, JobInfo
from jobqueue.queue.jobinfo import build_info, info_commands, redis_ms

if TYPE_CHECKING:
    from jobqueue.backend._keys import QueueKeys

LIST_STATES = ("waiting", "paused", "delayed", "active", "completed", "failed")
COUNT_NAMES: tuple[CountKind, ...] = ("waiting", "active", "completed", "failed", "delayed", "paused")
METRIC_FIELDS = {"completed": b"c", "failed": b"f", "retried": b"r"}


class QueueInspection:
    """The read side of ``Queue``."""

    name: str
    keys: QueueKeys

    # own_id comes from Queue.

    async def get_job_counts(self) -> dict[CountKind, int]:
        """Exact counts: ``waiting``, ``active``, ``completed``, ``failed``, ``delayed``, ``paused``."""
        k = self.keys
        async with redis_errors(queue=self.name):
            values = await _scripts.COUNTS(
                get_redis(self.name), [k.queue, k.active, k.completed, k.failed, k.paused], []
            )
        return dict(zip(COUNT_NAMES, (int(v) for v in values), strict=True))

    async def get_job(self, job_id: str) -> JobInfo | None:
        """A snapshot of the job, or None when the queue has no job with this id.

        An id that is not one of this queue's (another queue's, or one without the queue's
        ``<queue>:`` prefix) raises ``JobNotFoundError``, as every call of a queue does: a queue
        never reads or acts on another queue's job.
        """
        return (await self._fetch([self.own_id(job_id)]))[0]

    async def _fetch(self, job_ids: list[str]) -> list[JobInfo | None]:
        if not job_ids:
            return []
        async with redis_errors(queue=self.name):
            pipe = get_redis(self.name).pipeline(transaction=False)
            for job_id in job_ids:
                info_commands(pipe, self.keys, job_id)
            replies = await pipe.execute()
        width = len(replies) // len(job_ids)
        return [build_info(self, job_id, replies[i * width : (i + 1) * width]) for i, job_id in enumerate(job_ids)]  # type: ignore[arg-type]

    async def get_job_logs(self, job_id: str, start: int = 0, end: int = -1) -> list[str]:
        """The job's log lines (``add_job_log``), oldest first; ``start``/``end`` as in LRANGE.
        Empty when the job logged nothing or is gone."""
        self.own_id(job_id)
        async with redis_errors(queue=self.name):
            lines = await get_redis(self.name).lrange(self.keys.logs(job_id), start, end)
        return [line.decode(errors="replace") for line in lines]

    async def get_jobs(self, status: str, start: int = 0, end: int = 99) -> list[JobInfo]:
        """Jobs in ``status`` from position ``start`` to ``end`` inclusive.

        Waiting, paused and delayed jobs come in the order they will run; completed and failed
        ones newest first; active ones by id. Pages partition the list.
        """
        if status not in LIST_STATES:
            raise InvalidJobError(f"status must be one of {', '.join(LIST_STATES)}, got {status!r}")
        start, end = _validate.count(start, "start"), _validate.count(end, "end")
        size = max(end - start + 1, 0)
        if size == 0:
            return []
        k = self.keys
        async with redis_errors(queue=self.name):
            redis = get_redis(self.name)
            if status in ("completed", "failed"):
                ids = await redis.zrevrange(k.completed if status == "completed" else k.failed, start, end)
            elif status == "active":
                ids = sorted(await redis.hkeys(k.active))[start : end + 1]
            else:
                pipe = redis.pipeline(transaction=True)
                pipe.exists(k.paused)
                pipe.time()
                paused, now = await pipe.execute()
                now_ms = redis_ms(now)
                if status == "delayed":
                    ids = await redis.zrangebyscore(k.queue, f"({now_ms}", f"({PARKED_SCORE}", start=start, num=size)
                elif (status == "paused") != bool(paused):
                    return []
                else:
                    # Running jobs are parked far beyond now: positions are positions in the queue.
                    ids = await redis.zrangebyscore(k.queue, "-inf", now_ms, start=start, num=size)
        jobs = await self._fetch([i.decode() for i in ids])
        return [j for j in jobs if j is not None]

    async def get_metrics(self, minutes: int = 60) -> dict[str, list[int]]:
        """Completed, failed and retried runs per minute over the last ``minutes`` (at most a day).

        ``{"minutes": [start of each minute, epoch ms, oldest first; the last is the current
        minute], "completed": [...], "failed": [...], "retried": [...]}``; written by the
        workers' FINISH script, so reading it costs one round trip and writing it none.
        """
        minutes = _validate.count(minutes, "minutes")
        if not 1 <= minutes <= METRICS_KEEP_MINUTES:
            raise InvalidJobError(f"minutes must be from 1 to {METRICS_KEEP_MINUTES}, got {minutes}")
        async with redis_errors(queue=self.name):
            redis = get_redis(self.name)
            current = redis_ms(await redis.time()) // 60_000
            wanted = list(range(current - minutes + 1, current + 1))
            pipe = redis.pipeline(transaction=False)
            for minute in wanted:
                pipe.hmget(self.keys.minute(minute), *METRIC_FIELDS.values())
            rows = await pipe.execute()
        out: dict[str, list[int]] = {"minutes": [m * 60_000 for m in wanted]}
        for i, name in enumerate(METRIC_FIELDS):
            out[name] = [int(row[i] or 0) for row in rows]
        return out

    async def get_workers(self) -> list[dict[str, Any]]:
        """The live workers of this queue: ``id``, ``host``, ``pid``, ``concurrency``,
        ``started_at`` and ``last_heartbeat`` (epoch ms), ``running`` jobs, and their counts of
        ``completed``, ``failed``, ``retried``, ``handed_back``, ``parked`` and ``stale`` runs so far."""
        k = self.keys
        async with redis_errors(queue=self.name):
            redis = get_redis(self.name)
            beats = await redis.zrange(k.workers, 0, -1, withscores=True)
            if not beats:
                return []
            infos = await redis.mget([k.worker(w.decode()) for w, _ in beats])
        workers = []
        for (wid, beat), raw in zip(beats, infos, strict=True):
            if raw is None:  # its heartbeat expired: not alive
                continue
            info = loads(raw)
            workers.append({"id": wid.decode(), **info, "last_heartbeat": int(beat)})
        return workers
