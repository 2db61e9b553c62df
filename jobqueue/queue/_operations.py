"""Steering a queue: pause and resume, clean and drain in bounded batches, remove, retry."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

from jobqueue import _validate
from jobqueue.backend import _scripts
from jobqueue.backend.connection import get_redis, redis_errors
from jobqueue.constants import BULK_CHUNK, CLEAN_BATCH
from jobqueue.errors import InvalidJobError, JobNotFoundError, JobStateError
from jobqueue.queue.job import CleanState, JobHandle, JobInfo, PreparedJob

if TYPE_CHECKING:
    from jobqueue.backend._keys import QueueKeys

CLEAN_STATES = ("completed", "failed", "waiting", "delayed")


class QueueOperations:
    """The write side of ``Queue`` beyond enqueue."""

    name: str
    keys: QueueKeys
    default_priority: int

    # own_id, prepare and enqueue_prepared come from Queue; get_job and _fetch from QueueInspection.

    async def pause(self) -> None:
        """Stop workers of every process from starting jobs of this queue; enqueues still work."""
        async with redis_errors(queue=self.name):
            await get_redis(self.name).set(self.keys.paused, b"1")

    async def resume(self) -> None:
        """Let workers start this queue's jobs again, in priority order; idle workers wake at once."""
        async with redis_errors(queue=self.name):
            async with get_redis(self.name).pipeline(transaction=True) as pipe:
                pipe.delete(self.keys.paused)
                pipe.zadd(self.keys.marker, {"m": 0})
                await pipe.execute()

    async def is_paused(self) -> bool:
        async with redis_errors(queue=self.name):
            return bool(await get_redis(self.name).exists(self.keys.paused))

    async def clean(self, grace: float | dt.timedelta, limit: int = 0, status: CleanState = "completed") -> list[str]:
        """Remove up to ``limit`` (0: all) ``status`` jobs older than ``grace``; returns their ids.

        Age is the finish time for completed/failed jobs and the enqueue time for waiting/delayed.
        Works in batches of ``CLEAN_BATCH`` jobs per script call, so Redis is never blocked for
        more than a few milliseconds, whatever the queue's size.
        """
        grace_s = _validate.seconds(grace, "grace")
        limit = _validate.count(limit, "limit")
        if status not in CLEAN_STATES:
            raise InvalidJobError(f"status must be one of {', '.join(CLEAN_STATES)}, got {status!r}")
        k = self.keys
        removed: list[str] = []
        offset = 0
        while True:
            most = limit - len(removed) if limit else CLEAN_BATCH
            async with redis_errors(queue=self.name):
                more, kept, *ids = await _scripts.CLEAN(
                    get_redis(self.name),
                    [k.queue, k.completed, k.failed],
                    [k.base, int(grace_s * 1000), most, status, offset, CLEAN_BATCH],
                )
            removed += [i.decode() for i in ids]
            offset += int(kept)
            if not more or (limit and len(removed) >= limit):
                return removed

    async def drain(self, delayed: bool = False) -> int:
        """Remove every waiting (and, with ``delayed``, delayed) job; active ones are left to run."""
        removed = len(await self.clean(0, 0, "waiting"))
        if delayed:
            removed += len(await self.clean(0, 0, "delayed"))
        return removed

    async def remove_job(self, job_id: str) -> bool:
        """Remove a job that is not active; False when there was none. Active jobs raise JobStateError."""
        k = self.keys
        self.own_id(job_id)
        async with redis_errors(queue=self.name):
            code = await _scripts.REMOVE(
                get_redis(self.name), [k.queue, k.active, k.completed, k.failed], [k.base, job_id]
            )
        if code == -1:
            raise JobStateError(f"job {job_id} is active and cannot be removed until it finishes")
        return code == 1

    async def promote_job(self, job_id: str) -> None:
        """Make a delayed job (or one waiting to retry) due now, at its priority."""
        k = self.keys
        self.own_id(job_id)
        async with redis_errors(queue=self.name):
            code = await _scripts.PROMOTE(
                get_redis(self.name), [k.queue, k.active, k.seq], [job_id, self.default_priority, k.base]
            )
        if code == 0:
            raise JobNotFoundError(f"job {job_id} not found in queue {self.name}")
        if code == -1:
            raise JobStateError(f"job {job_id} is not delayed, only delayed jobs can be promoted")

    async def retry_job(self, job_id: str) -> JobHandle:
        """Put a failed job back in the queue under its id, with fresh attempts, its payload and priority."""
        job = await self.get_job(job_id)
        if job is None:
            raise JobNotFoundError(f"job {job_id} not found in queue {self.name}")
        if job.state != "failed":
            raise JobStateError(f"job {job_id} is {job.state}, only failed jobs can be retried")
        return (await self.enqueue_prepared([self._again(job)]))[0]

    async def retry_failed(self) -> list[JobHandle]:
        """Retry every job failed now (in pipelined batches); returns the handles.

        A failed job whose id is meanwhile waiting or active again is superseded by that job: its
        failed record is dropped rather than retried.
        """
        async with redis_errors(queue=self.name):
            ids = [i.decode() for i in await get_redis(self.name).zrange(self.keys.failed, 0, -1)]
        handles: list[JobHandle] = []
        for i in range(0, len(ids), BULK_CHUNK):
            page = [j for j in await self._fetch(ids[i : i + BULK_CHUNK]) if j is not None and j.state == "failed"]
            batch = await self.enqueue_prepared([self._again(j) for j in page])
            superseded = [h.job_id for h in batch if not h.created]
            if superseded:
                async with redis_errors(queue=self.name):
                    pipe = get_redis(self.name).pipeline(transaction=True)
                    pipe.zrem(self.keys.failed, *superseded)
                    pipe.delete(*(self.keys.done(j) for j in superseded))
                    await pipe.execute()
            handles += batch
        return handles

    def _again(self, job: JobInfo) -> PreparedJob:
        # The stored id, not the one the payload gives: a schedule's jobs have their slot's id.
        return self.prepare(job.payload, priority=job.priority, job_id=job.job_id)
