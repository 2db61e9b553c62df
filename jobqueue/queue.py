"""One queue: enqueue, inspect and operate on its jobs."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from jobqueue import _scripts, _validate
from jobqueue._json import dumps, loads
from jobqueue._keys import QueueKeys
from jobqueue.connection import get_redis, redis_errors
from jobqueue.constants import BULK_CHUNK, PRIORITY_BAND, RESULT_POLL_MAX_S, RESULT_POLL_MIN_S
from jobqueue.errors import (
    InvalidJobError,
    JobFailedError,
    JobNotFoundError,
    JobResultTimeoutError,
    JobStateError,
)
from jobqueue.job import CleanState, CountKind, JobHandle, JobInfo, JobState
from jobqueue.jobinfo import build_info, info_commands, state_commands, state_from

CLEAN_STATES = ("completed", "failed", "waiting", "delayed")
LIST_STATES = ("waiting", "paused", "delayed", "active", "completed", "failed")


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass(frozen=True, slots=True)
class PreparedJob:
    """A validated job, ready to be written: the arguments of one enqueue script call."""

    job_id: str
    job_json: str
    priority: int
    due_ms: int


class Queue:
    """A named queue whose jobs run one job function on the workers of that queue.

    The module-level queue objects (``product_embedding_queue``, ...) are instances of this class;
    building one does not touch Redis.
    """

    def __init__(
        self,
        name: str,
        *,
        function: str,
        payload_model: type[BaseModel],
        result_model: type[BaseModel] | None,
        default_priority: int,
        job_id: Callable[[Any], str],
    ) -> None:
        self.name = name
        self.function = function
        self.payload_model = payload_model
        self.result_model = result_model
        self.default_priority = default_priority
        self.keys = QueueKeys(name)
        self._job_id = job_id
        self._function_json = dumps(function)

    def __repr__(self) -> str:
        return f"Queue({self.name!r})"

    # -- enqueue ---------------------------------------------------------------------------

    def prepare(
        self, payload: Any, *, priority: int | None = None, delay: Any = None, run_at: Any = None
    ) -> PreparedJob:
        """Validate one job (raising ``InvalidJobError``) without writing anything."""
        model = _validate.payload(self.payload_model, payload, self.name)
        p = _validate.priority(priority, self.default_priority)
        now = now_ms()
        due = 0
        if delay is not None and run_at is not None:
            raise InvalidJobError("give delay or run_at, not both")
        if delay is not None:
            seconds = _validate.seconds(delay, "delay")
            due = now + int(seconds * 1000) if seconds > 0 else 0
        elif run_at is not None:
            when = _validate.aware_datetime(run_at, "run_at")
            due = max(int(when.timestamp() * 1000), 0)
            due = due if due > now else 0
        # arq's job layout in JSON; "a" is (payload, priority), the two arguments of the job
        # wrapper. Composed from pydantic's own JSON: json.dumps of a dict costs twice as much.
        payload_json = model.model_dump_json(exclude_none=True)
        tail = f',"d":{due}}}' if due else "}"
        job = f'{{"t":null,"f":{self._function_json},"a":[{payload_json},{p}],"k":{{}},"et":{now}{tail}'
        return PreparedJob(self._job_id(model), job, p, due)

    def _handle(self, job_id: str, code: int) -> JobHandle:
        return JobHandle(job_id, self.name, created=code == 1, rerun=code == 2, _queue=self)

    def script_args(self, jobs: Iterable[PreparedJob]) -> list[Any]:
        """Arguments of the enqueue script (which takes no KEYS: it builds them from the prefix)."""
        args: list[Any] = [self.keys.base, now_ms()]
        for job in jobs:
            args += [job.job_id, job.job_json, job.priority, job.due_ms]
        return args

    async def enqueue(
        self, payload: Any, *, priority: int | None = None, delay: Any = None, run_at: Any = None
    ) -> JobHandle:
        """Add one job (one round trip). See ``JobHandle`` for ``created`` and ``rerun``."""
        job = self.prepare(payload, priority=priority, delay=delay, run_at=run_at)
        return (await self.enqueue_prepared([job]))[0]

    async def add_bulk(
        self, payloads: Iterable[Any], *, priority: int | None = None, delay: Any = None
    ) -> list[JobHandle]:
        """Validate every payload first, then add them all in one round of pipelined commands."""
        jobs = [self.prepare(p, priority=priority, delay=delay) for p in payloads]
        return await self.enqueue_prepared(jobs)

    async def enqueue_prepared(self, jobs: list[PreparedJob]) -> list[JobHandle]:
        """Write already-prepared jobs: one script call per chunk, all chunks in one pipeline."""
        if not jobs:
            return []
        async with redis_errors(scale=1 + len(jobs) // BULK_CHUNK):
            redis = get_redis()
            if len(jobs) <= BULK_CHUNK:
                codes = await _scripts.ENQUEUE(redis, [], self.script_args(jobs))
            else:
                pipe = redis.pipeline(transaction=False)
                for i in range(0, len(jobs), BULK_CHUNK):
                    _scripts.ENQUEUE.queue_in(pipe, [], self.script_args(jobs[i : i + BULK_CHUNK]))
                codes = [c for chunk in await _scripts.run_pipeline(redis, pipe, _scripts.ENQUEUE) for c in chunk]
        return [self._handle(job.job_id, code) for job, code in zip(jobs, codes, strict=True)]

    # -- state and results -----------------------------------------------------------------

    async def get_job_state(self, job_id: str) -> JobState:
        async with redis_errors():
            pipe = get_redis().pipeline(transaction=True)
            state_commands(pipe, self.keys, job_id)
            return state_from(await pipe.execute(), now_ms())

    async def wait_for_result(self, job_id: str, *, timeout: float | None = None) -> Any:
        deadline = None if timeout is None else time.monotonic() + timeout
        pause = RESULT_POLL_MIN_S
        while True:
            async with redis_errors():
                pipe = get_redis().pipeline(transaction=True)
                pipe.get(self.keys.done(job_id))
                state_commands(pipe, self.keys, job_id)
                raw, *rest = await pipe.execute()
            state = state_from(rest, now_ms())
            if raw is not None and state in ("completed", "failed"):
                return self._outcome(loads(raw))
            if state == "unknown":
                raise JobNotFoundError(f"job {job_id} not found in queue {self.name}")
            if deadline is not None and time.monotonic() + pause > deadline:
                raise JobResultTimeoutError(f"job {job_id} did not finish within {timeout}s (state: {state})")
            await asyncio.sleep(pause)
            pause = min(pause * 1.5, RESULT_POLL_MAX_S)

    def _outcome(self, record: dict[str, Any]) -> Any:
        if record["state"] == "failed":
            raise JobFailedError(record["id"], record.get("error") or "unknown error", record.get("attempts", 0))
        result = record.get("result")
        if self.result_model is not None and result is not None:
            return self.result_model.model_validate(result)
        return result

    async def get_job_counts(self) -> dict[CountKind, int]:
        """Exact counts: ``waiting``, ``active``, ``completed``, ``failed``, ``delayed``, ``paused``."""
        k = self.keys
        async with redis_errors():
            values = await _scripts.COUNTS(
                get_redis(), [k.queue, k.active, k.completed, k.failed, k.paused], [now_ms()]
            )
        names: tuple[CountKind, ...] = ("waiting", "active", "completed", "failed", "delayed", "paused")
        return dict(zip(names, (int(v) for v in values), strict=True))

    async def get_job(self, job_id: str) -> JobInfo | None:
        """A snapshot of the job, or None when no job with this id is known."""
        return (await self._fetch([job_id]))[0]

    async def _fetch(self, job_ids: list[str]) -> list[JobInfo | None]:
        if not job_ids:
            return []
        async with redis_errors():
            pipe = get_redis().pipeline(transaction=False)
            for job_id in job_ids:
                info_commands(pipe, self.keys, job_id)
            replies = await pipe.execute()
        width = len(replies) // len(job_ids)
        now = now_ms()
        return [build_info(self, job_id, replies[i * width : (i + 1) * width], now) for i, job_id in enumerate(job_ids)]

    async def get_jobs(self, status: str, start: int = 0, end: int = 99) -> list[JobInfo]:
        """Jobs in ``status`` from position ``start`` to ``end`` inclusive.

        Waiting, paused and delayed jobs come in the order they will run; completed and failed
        ones newest first; active ones by id.
        """
        if status not in LIST_STATES:
            raise InvalidJobError(f"status must be one of {', '.join(LIST_STATES)}, got {status!r}")
        start, end = _validate.count(start, "start"), _validate.count(end, "end")
        size = max(end - start + 1, 0)
        k = self.keys
        async with redis_errors():
            redis = get_redis()
            if status in ("completed", "failed"):
                ids = await redis.zrevrange(k.completed if status == "completed" else k.failed, start, end)
            elif status == "active":
                ids = sorted(await redis.hkeys(k.active))[start : end + 1]
            else:
                now = now_ms()
                paused = bool(await redis.exists(k.paused))
                if (status == "paused") != paused and status != "delayed":
                    return []
                active = set(await redis.hkeys(k.active))
                if status == "delayed":
                    ids = await redis.zrangebyscore(k.queue, f"({now}", "+inf", start=start, num=size)
                else:
                    ids = await redis.zrangebyscore(k.queue, "-inf", now, start=start, num=size + len(active))
                    ids = [i for i in ids if i not in active][:size]
        jobs = await self._fetch([i.decode() for i in ids])
        return [j for j in jobs if j is not None]

    # -- operations ------------------------------------------------------------------------

    async def pause(self) -> None:
        """Stop workers of every process from starting jobs of this queue; enqueues still work."""
        async with redis_errors():
            await get_redis().set(self.keys.paused, b"1")

    async def resume(self) -> None:
        async with redis_errors():
            await get_redis().delete(self.keys.paused)

    async def is_paused(self) -> bool:
        async with redis_errors():
            return bool(await get_redis().exists(self.keys.paused))

    async def clean(self, grace: float | dt.timedelta, limit: int = 0, status: CleanState = "completed") -> list[str]:
        """Remove up to ``limit`` (0: all) ``status`` jobs older than ``grace``; returns their ids.

        Age is the finish time for completed/failed jobs and the enqueue time for waiting/delayed.
        """
        grace_s = _validate.seconds(grace, "grace")
        limit = _validate.count(limit, "limit")
        if status not in CLEAN_STATES:
            raise InvalidJobError(f"status must be one of {', '.join(CLEAN_STATES)}, got {status!r}")
        k = self.keys
        async with redis_errors():
            removed = await _scripts.CLEAN(
                get_redis(),
                [k.queue, k.active, k.completed, k.failed],
                [k.base, now_ms(), int(grace_s * 1000), limit, status],
            )
        return [r.decode() for r in removed]

    async def drain(self, delayed: bool = False) -> int:
        """Remove every waiting (and, with ``delayed``, delayed) job; active ones are left to run."""
        removed = len(await self.clean(0, 0, "waiting"))
        if delayed:
            removed += len(await self.clean(0, 0, "delayed"))
        return removed

    async def remove_job(self, job_id: str) -> bool:
        """Remove a job that is not active; False when there was none. Active jobs raise JobStateError."""
        k = self.keys
        async with redis_errors():
            code = await _scripts.REMOVE(get_redis(), [k.queue, k.active, k.completed, k.failed], [k.base, job_id])
        if code == -1:
            raise JobStateError(f"job {job_id} is active and cannot be removed until it finishes")
        return code == 1

    async def promote_job(self, job_id: str) -> None:
        """Make a delayed job (or one waiting to retry) due now, at its priority."""
        k = self.keys
        async with redis_errors():
            code = await _scripts.PROMOTE(
                get_redis(), [k.queue, k.active, k.seq], [job_id, now_ms(), PRIORITY_BAND, self.default_priority]
            )
        if code == 0:
            raise JobNotFoundError(f"job {job_id} not found in queue {self.name}")
        if code == -1:
            raise JobStateError(f"job {job_id} is not delayed, only delayed jobs can be promoted")

    async def retry_job(self, job_id: str) -> JobHandle:
        """Put a failed job back in the queue, with fresh attempts and its payload and priority."""
        job = await self.get_job(job_id)
        if job is None:
            raise JobNotFoundError(f"job {job_id} not found in queue {self.name}")
        if job.state != "failed":
            raise JobStateError(f"job {job_id} is {job.state}, only failed jobs can be retried")
        return (await self.enqueue_prepared([self.prepare(job.payload, priority=job.priority)]))[0]

    async def retry_failed(self) -> list[JobHandle]:
        """Retry every job failed now (in pipelined batches); returns the handles.

        A failed job whose id is meanwhile waiting or active again is superseded by that job: its
        failed record is dropped rather than retried.
        """
        async with redis_errors():
            ids = [i.decode() for i in await get_redis().zrange(self.keys.failed, 0, -1)]
        handles: list[JobHandle] = []
        for i in range(0, len(ids), BULK_CHUNK):
            page = [j for j in await self._fetch(ids[i : i + BULK_CHUNK]) if j is not None and j.state == "failed"]
            batch = await self.enqueue_prepared([self.prepare(j.payload, priority=j.priority) for j in page])
            superseded = [h.job_id for h in batch if not h.created]
            if superseded:
                async with redis_errors():
                    pipe = get_redis().pipeline(transaction=True)
                    pipe.zrem(self.keys.failed, *superseded)
                    pipe.delete(*(self.keys.done(j) for j in superseded))
                    await pipe.execute()
            handles += batch
        return handles
