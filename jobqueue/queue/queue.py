"""One queue: enqueue, wait for results; inspection, operations and events come from mixins."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
from typing import Any

from pydantic import BaseModel

from jobqueue import _validate, tracing
from jobqueue.backend import _autopipeline, _replicated, _scripts
from jobqueue.backend._json import dumps, loads
from jobqueue.backend._keys import QueueKeys
from jobqueue.backend.connection import get_redis, redis_errors
from jobqueue.constants import BULK_CHUNK, RESULT_POLL_MAX_S, RESULT_POLL_MIN_S, RESULT_RECHECK_S
from jobqueue.errors import InvalidJobError, JobFailedError, JobNotFoundError, JobResultTimeoutError
from jobqueue.queue import _result_wait
from jobqueue.queue._cancel import QueueCancel
from jobqueue.queue._inspection import QueueInspection
from jobqueue.queue._operations import QueueOperations
from jobqueue.queue.events import QueueEvents
from jobqueue.queue.job import JobHandle, JobState, PreparedJob
from jobqueue.queue.jobinfo import state_commands, state_from
from jobqueue.settings import get_settings


class Queue(QueueInspection, QueueOperations, QueueEvents, QueueCancel):
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
        self,
        payload: Any,
        *,
        priority: int | None = None,
        delay: Any = None,
        run_at: Any = None,
        job_id: str | None = None,
    ) -> PreparedJob:
        """Validate one job (raising ``InvalidJobError``) without writing anything.

        ``job_id`` replaces the id derived from the payload, to write a job again under the id it
        already has (a retry of a job a schedule enqueued, whose id is its slot's).
        """
        model = _validate.payload(self.payload_model, payload, self.name)
        p = _validate.priority(priority, self.default_priority)
        when = "0"
        if delay is not None and run_at is not None:
            raise InvalidJobError("give delay or run_at, not both")
        if delay is not None:
            seconds = _validate.seconds(delay, "delay")
            when = f"+{int(seconds * 1000)}" if seconds > 0 else "0"
        elif run_at is not None:
            when = f"@{max(int(_validate.aware_datetime(run_at, 'run_at').timestamp() * 1000), 0)}"
        # arq's job layout in JSON; "a" is (payload, priority), the two arguments of the job
        # wrapper. The script adds the enqueue (and due) time in Redis time and closes it.
        # Composed from pydantic's own JSON: json.dumps of a dict costs twice as much.
        payload_json = model.model_dump_json(exclude_none=True)
        _validate.payload_size(payload_json, self.name)
        head = f'{{"t":null,"f":{self._function_json},"a":[{payload_json},{p}],"k":{{}}'
        return PreparedJob(self._job_id(model) if job_id is None else self.own_id(job_id), head, p, when)

    def _handle(self, job_id: str, code: int) -> JobHandle:
        return JobHandle(job_id, self.name, created=code == 1, rerun=code == 2, _queue=self)

    def script_args(self, jobs: Iterable[PreparedJob]) -> list[Any]:
        """Arguments of the enqueue script (which takes no KEYS: it builds them from the prefix)."""
        args: list[Any] = [self.keys.base]
        for job in jobs:
            args += [job.job_id, job.job_head, job.priority, job.when]
        return args

    async def enqueue(
        self, payload: Any, *, priority: int | None = None, delay: Any = None, run_at: Any = None
    ) -> JobHandle:
        """Add one job (one round trip). See ``JobHandle`` for ``created`` and ``rerun``."""
        job = self.prepare(payload, priority=priority, delay=delay, run_at=run_at)
        settings = get_settings()
        if settings.auto_pipeline and not settings.enqueue_replicas and not tracing.recording():
            # The common path, written flat (it is the API's hot path): the call joins this
            # event-loop turn's enqueues, as ``_write`` would have it join them.
            batch = _autopipeline.batch_for(get_redis(self.name), self.name)
            (code,) = await batch.enqueue(self.script_args((job,)))
            return self._handle(job.job_id, code)
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
        otel = tracing.active()
        if otel is not None:
            return await otel.traced_enqueue(self, jobs, self._write)
        return await self._write(jobs)

    async def _write(self, jobs: list[PreparedJob]) -> list[JobHandle]:
        replicas = _replicated.wanted()
        if replicas:  # its own pipeline, ending in WAIT: not one of an auto-pipelined batch
            return await self._write_replicated(jobs, replicas)
        if len(jobs) <= BULK_CHUNK and _autopipeline.enabled():
            # Joins the enqueues of this event-loop turn: one round trip for all (its own timeout).
            codes = await _autopipeline.batch_for(get_redis(self.name), self.name).enqueue(self.script_args(jobs))
            return [self._handle(job.job_id, code) for job, code in zip(jobs, codes, strict=True)]
        async with redis_errors(queue=self.name, scale=1 + len(jobs) // BULK_CHUNK):
            redis = get_redis(self.name)
            if len(jobs) <= BULK_CHUNK:
                codes = await _scripts.ENQUEUE(redis, [], self.script_args(jobs))
            else:
                pipe = redis.pipeline(transaction=False)
                for i in range(0, len(jobs), BULK_CHUNK):
                    _scripts.ENQUEUE.queue_in(pipe, [], self.script_args(jobs[i : i + BULK_CHUNK]))
                codes = [c for chunk in await _scripts.run_pipeline(redis, pipe, _scripts.ENQUEUE) for c in chunk]
        return [self._handle(job.job_id, code) for job, code in zip(jobs, codes, strict=True)]

    async def _write_replicated(self, jobs: list[PreparedJob], replicas: int) -> list[JobHandle]:
        """``enqueue_prepared`` under ``JOBQUEUE_ENQUEUE_REPLICAS``: the scripts, then WAIT, in one
        pipeline (one connection); ``NotReplicatedError`` when too few replicas confirm in time."""
        async with redis_errors(queue=self.name, scale=1 + len(jobs) // BULK_CHUNK + _replicated.extra_scale()):
            redis = get_redis(self.name)
            pipe = redis.pipeline(transaction=False)
            for i in range(0, len(jobs), BULK_CHUNK):
                _scripts.ENQUEUE.queue_in(pipe, [], self.script_args(jobs[i : i + BULK_CHUNK]))
            _replicated.queue_wait(pipe, self.keys.base, replicas)
            replies = await _scripts.run_pipeline(redis, pipe, _scripts.ENQUEUE)
        codes = [c for chunk in replies[: -_replicated.ADDED_REPLIES] for c in chunk]
        handles = [self._handle(job.job_id, code) for job, code in zip(jobs, codes, strict=True)]
        _replicated.check(replies, replicas, handles, self.name)
        return handles

    # -- state and results -----------------------------------------------------------------

    def own_id(self, job_id: str) -> str:
        """``job_id`` when it is an id of this queue; ``JobNotFoundError`` for any other.

        Job ids carry their queue's name (``product-embedding:p1``), and arq's job keys are
        global, so a queue must never act on another queue's job.
        """
        if not isinstance(job_id, str) or not job_id.startswith(self.name + ":"):
            raise JobNotFoundError(f"{job_id!r} is not a job of queue {self.name} (its ids start with {self.name}:)")
        return job_id

    async def get_job_state(self, job_id: str) -> JobState:
        self.own_id(job_id)
        async with redis_errors(queue=self.name):
            pipe = get_redis(self.name).pipeline(transaction=True)
            state_commands(pipe, self.keys, job_id)
            return state_from(await pipe.execute())

    async def wait_for_result(self, job_id: str, *, timeout: float | None = None) -> Any:
        """The job's result once it has finished (see ``JobHandle.result``): woken by the queue's
        events (``jobqueue.queue._result_wait``), polling only when the events stream is turned off."""
        self.own_id(job_id)
        deadline = None if timeout is None else time.monotonic() + timeout
        raw, state = await self._look(job_id)
        if raw is not None and state in ("completed", "failed"):
            return self._outcome(loads(raw))
        if get_settings().events_maxlen == 0:
            return await self._poll_result(job_id, deadline, timeout)
        listener, woken = _result_wait.listen(self.name, self.keys.events, job_id)
        try:
            await _result_wait.wait_woken(listener.ready, self._wait(deadline))
            while True:
                woken.clear()
                raw, state = await self._look(job_id)
                if raw is not None and state in ("completed", "failed"):
                    return self._outcome(loads(raw))
                if state == "unknown":
                    raise JobNotFoundError(f"job {job_id} not found in queue {self.name}")
                wait = self._wait(deadline)
                if wait <= 0:
                    raise JobResultTimeoutError(f"job {job_id} did not finish within {timeout}s (state: {state})")
                await _result_wait.wait_woken(woken, wait)
        finally:
            await _result_wait.leave(listener, job_id, woken)

    @staticmethod
    def _wait(deadline: float | None) -> float:
        """How long to wait before looking at the job again: at most ``RESULT_RECHECK_S``."""
        if deadline is None:
            return RESULT_RECHECK_S
        return min(RESULT_RECHECK_S, deadline - time.monotonic())

    async def _look(self, job_id: str) -> tuple[bytes | None, JobState]:
        """The job's record (None until it has finished) and its state, read together."""
        async with redis_errors(queue=self.name):
            pipe = get_redis(self.name).pipeline(transaction=True)
            pipe.get(self.keys.done(job_id))
            state_commands(pipe, self.keys, job_id)
            raw, *rest = await pipe.execute()
        return raw, state_from(rest)

    async def _poll_result(self, job_id: str, deadline: float | None, timeout: float | None) -> Any:
        pause = RESULT_POLL_MIN_S
        while True:
            raw, state = await self._look(job_id)
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
