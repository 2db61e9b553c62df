"""One worker's side of jobqueue: its identity, the runs it owns, and its calls to the scripts.

Every transition of a job made by a worker goes through a script that checks the run's owner
token: START takes ownership (the job leaves arq's queue zset, gets an owner and a lease), FINISH
ends it (only by the run that owns it), and the tick renews this worker's leases and returns runs
whose lease expired — whoever's they were, this worker's own orphans included.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
import time
from dataclasses import dataclass, field
from typing import Any

from redis.exceptions import RedisError

from jobqueue import _redis_errors, _scripts
from jobqueue._arq import ArqClaims
from jobqueue._json import dumps
from jobqueue.constants import (
    ARQ_IN_PROGRESS_PREFIX,
    ARQ_JOB_PREFIX,
    ARQ_RETRY_PREFIX,
    PROMOTE_BATCH,
    RECORD_RETRY_S,
    RETURN_BATCH,
)
from jobqueue.metrics import worker_metrics
from jobqueue.options import QueueOptions
from jobqueue.queue import Queue

logger = logging.getLogger("jobqueue.worker")


@dataclass(slots=True)
class Run:
    """One run this worker owns: the token that proves it, and what START answered."""

    job_id: str
    token: str
    attempt: int
    started_ms: int
    priority: int
    enqueued_ms: int = 0
    monotonic_start: float = field(default_factory=time.monotonic)


@dataclass(slots=True)
class Outcome:
    """How a run ended: ``completed``, ``failed``, ``retry`` or ``handback`` (a graceful stop)."""

    kind: str
    record: dict[str, Any] = field(default_factory=dict)
    error: str = ""
    delay_ms: int = 0


@dataclass(slots=True)
class WorkerState:
    """One running worker's jobqueue side, kept in ``ctx["jobqueue"]``."""

    queue: Queue
    options: QueueOptions
    worker_id: str
    redis: Any
    started_ms: int = 0
    running: dict[str, str] = field(default_factory=dict)  # job id -> run token
    resumed: asyncio.Event = field(default_factory=asyncio.Event)
    counters: dict[str, int] = field(
        default_factory=lambda: {"completed": 0, "failed": 0, "retried": 0, "handed_back": 0, "stale": 0}
    )
    tick_task: asyncio.Task[None] | None = None
    claims: ArqClaims | None = None  # what arq's claims carried and FINISH released (jobqueue._arq)

    async def call(self, script: _scripts.Script, keys: list[str], args: list[Any]) -> Any:
        """A script call that waits out Redis being away, busy or read-only for ``RECORD_RETRY_S``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + RECORD_RETRY_S
        pause = 0.1
        while True:
            try:
                return await script(self.redis, keys, args)
            except _redis_errors.WORKER_TRANSIENT as exc:
                if loop.time() + pause > deadline:
                    raise
                logger.warning("%s: Redis call failed, retrying: %s", self.queue.name, _redis_errors.describe(exc))
                await asyncio.sleep(pause)
                pause = min(pause * 2, 2.0)

    # -- START and FINISH ------------------------------------------------------------------

    async def start(self, job_id: str, token: str) -> list[int]:
        k, o = self.queue.keys, self.options
        return await self.call(
            _scripts.START,
            [k.queue, k.active, k.paused],
            [k.base, job_id, self.worker_id, token, int(o.worker_lease * 1000), o.attempts],
        )

    async def claim(self, job_id: str, arq_now_ms: int, in_progress_ms: int) -> tuple[str, list[Any]]:
        """arq's claim of ``job_id``, its first read of the job and START, in one script
        (``claim.lua``, answered to arq by ``jobqueue._arq.ClaimSafePipeline``): a fresh run
        token and the script's reply."""
        token = secrets.token_hex(8)
        k, o = self.queue.keys, self.options
        keys = [
            ARQ_IN_PROGRESS_PREFIX + job_id,
            k.queue,
            ARQ_JOB_PREFIX + job_id,
            ARQ_RETRY_PREFIX + job_id,
            k.active,
            k.paused,
        ]
        lease_ms = int(o.worker_lease * 1000)
        id_prefix = self.queue.name + ":"  # only the queue's own jobs are STARTed, not arq's cron jobs
        args = [arq_now_ms, in_progress_ms, k.base, job_id, self.worker_id, token, lease_ms, o.attempts, id_prefix]
        return token, await _scripts.CLAIM(self.redis, keys, args)

    async def finish(self, run: Run, outcome: Outcome) -> int:
        """Record how ``run`` ended; -1 when the run no longer owned its job (nothing changed)."""
        o, k = self.options, self.queue.keys
        body = dumps(outcome.record) if outcome.record else outcome.error
        args: list[Any] = [
            k.base,
            o.keep_completed,
            int(o.keep_completed_age * 1000),
            o.keep_failed,
            int(o.keep_failed_age * 1000),
            run.job_id,
            run.token,
            outcome.kind,
            body,
            outcome.delay_ms,
            run.priority,
        ]
        try:
            code = await self.call(_scripts.FINISH, [k.queue, k.active, k.seq, k.completed, k.failed], args)
        except (RedisError, OSError) as exc:
            # The lease is no longer renewed: it expires and the job is returned, to run again.
            logger.error(
                "%s: could not record the %s of %s (%s); it will run again once its lease expires",
                self.queue.name,
                outcome.kind,
                run.job_id,
                _redis_errors.describe(exc),
            )
            return 0
        if code == -1:
            self.counters["stale"] += 1
            logger.warning(
                "%s: the run of %s ended (%s) after its lease expired and the job was returned; "
                "its outcome changes nothing",
                self.queue.name,
                run.job_id,
                outcome.kind,
            )
        else:
            self.counters[{"retry": "retried", "handback": "handed_back"}.get(outcome.kind, outcome.kind)] += 1
            if self.claims is not None:  # FINISH deleted arq's in-progress key: arq's own DEL is not sent
                self.claims.released.add(run.job_id)
        return int(code)

    # -- the tick --------------------------------------------------------------------------

    async def tick(self) -> float:
        """Heartbeat, renew own leases, promote due jobs, return expired runs, follow pause.

        Returns the seconds until the next tick: the tick interval, or less when a delayed job
        falls due sooner, so it is promoted to its priority as soon as it is due.
        """
        k, o = self.queue.keys, self.options
        info = dumps(
            {
                "host": socket.gethostname(),
                "pid": os.getpid(),
                "concurrency": o.concurrency,
                "started_at": self.started_ms,
                "running": len(self.running),
                **self.counters,
            }
        )
        owned = [v for pair in self.running.items() for v in pair]
        paused, _promoted, returned, next_due_ms, now = await _scripts.TICK(
            self.redis,
            [k.queue, k.active, k.seq, k.paused, k.workers, k.completed, k.failed],
            [
                k.base,
                self.worker_id,
                int(o.worker_lease * 1000),
                self.queue.default_priority,
                PROMOTE_BATCH,
                RETURN_BATCH,
                info,
                *owned,
            ],
        )
        if not self.started_ms:
            self.started_ms = int(now)
        if returned:
            logger.warning("%s: %d run(s) whose lease expired returned to the queue", self.queue.name, returned)
        if paused:
            self.resumed.clear()
        else:
            self.resumed.set()
        if 0 <= next_due_ms < o.tick_interval * 1000:
            return next_due_ms / 1000 + 0.001
        return o.tick_interval

    async def run_ticks(self, first_wait: float) -> None:
        wait = first_wait
        while True:
            await asyncio.sleep(wait)
            try:
                wait = await self.tick()
                worker_metrics().beat(self.queue.name)
            except (RedisError, *_redis_errors.TRANSIENT) as exc:
                wait = self.options.tick_interval
                logger.warning("%s: worker tick failed, will retry: %s", self.queue.name, _redis_errors.describe(exc))
