"""One worker's side of jobqueue: its identity, the runs it owns, and its calls to the scripts.

Every transition of a job made by a worker goes through a script that checks the run's owner
token: CLAIM takes ownership of up to N ready jobs (each leaves the ready part of the queue zset,
gets an owner and a lease), FINISH ends a run (only by the run that owns it), and the tick renews
this worker's leases and returns runs whose lease expired — whoever's they were, this worker's own
orphans included. Both CLAIM and FINISH may be sent twice (a reply lost on the way back): the
second answers what the first did.
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

from jobqueue.backend import _redis_errors, _scripts
from jobqueue.backend._json import dumps
from jobqueue.constants import EVENT_RESULT_MAX, EVENT_TEXT_MAX, PROMOTE_BATCH, RECORD_RETRY_S, RETURN_BATCH
from jobqueue.metrics import worker_metrics
from jobqueue.queue.queue import Queue
from jobqueue.worker.options import QueueOptions

logger = logging.getLogger("jobqueue.worker")


@dataclass(slots=True)
class Run:
    """One run this worker owns: the token that proves it, and what CLAIM answered."""

    job_id: str
    token: str
    attempt: int
    started_ms: int
    priority: int
    enqueued_ms: int = 0
    due_ms: int = 0  # when it fell due, when later than its enqueue (a delay, a schedule, a backoff)
    monotonic_start: float = field(default_factory=time.monotonic)
    cancel_reason: str | None = None  # set when cancel_job asked for this run to stop


@dataclass(slots=True)
class Claimed:
    """One job CLAIM gave this worker: its run token, arq's job JSON, and whether to run it (code 1)
    or fail it at once because every attempt was used by runs that never reported back (code 4)."""

    job_id: str
    token: str
    job: bytes
    code: int
    attempt: int
    started_ms: int  # Redis' clock when CLAIM took it: the run's start, comparable across hosts
    due_ms: int = 0  # when a retry's backoff ended or a promotion made it due (0: its enqueue's due time)


@dataclass(slots=True)
class Claim:
    """CLAIM's answer: the jobs taken, whether the queue is paused, Redis' clock, when the next
    delayed job falls due (ms from now, or None) and whether ready jobs were left for others."""

    jobs: list[Claimed]
    paused: bool
    now_ms: int
    next_due_ms: int | None
    more: bool


@dataclass(slots=True)
class Outcome:
    """How a run ended: ``completed``, ``failed``, ``retry``, ``handback`` (a graceful stop) or
    ``park`` (the job waits, delayed, for work done elsewhere; no attempt spent)."""

    kind: str
    record: dict[str, Any] = field(default_factory=dict)
    error: str = ""
    delay_ms: int = 0
    body: str = ""  # the record as JSON, when already serialized
    error_type: str = ""  # a retry's: the class of the error (a failure's is in its record)
    code: int = 0  # FINISH's answer once sent: 1 or 2 recorded, -1 stale (nothing changed), 0 not recorded


@dataclass(slots=True)
class WorkerState:
    """One running worker's jobqueue side, kept in ``ctx["jobqueue"]``."""

    queue: Queue
    options: QueueOptions
    worker_id: str
    redis: Any
    started_ms: int = 0
    running: dict[str, Run] = field(default_factory=dict)  # run token -> the run
    counters: dict[str, int] = field(
        default_factory=lambda: {"completed": 0, "failed": 0, "retried": 0, "handed_back": 0, "parked": 0, "stale": 0}
    )
    tick_task: asyncio.Task[None] | None = None
    renewed_at: float = 0.0  # monotonic time of the last lease renewal (and heartbeat)
    beat_info: str = ""  # the worker info the last heartbeat wrote
    hooks: Any = None  # jobqueue.worker._hooks.WorkerHooks, when the settings class has on_completed/on_failed

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

    # -- CLAIM and FINISH ------------------------------------------------------------------

    async def claim(self, most: int) -> Claim:
        """Take up to ``most`` ready jobs (``claim.lua``), waiting out Redis for ``RECORD_RETRY_S``;
        a claim sent again after a lost reply answers the first one."""
        k, o = self.queue.keys, self.options
        args = [
            k.base,
            self.worker_id,
            secrets.token_hex(6),
            int(o.worker_lease * 1000),
            o.attempts,
            most,
            self.queue.name + ":",
            self.queue.default_priority,
            PROMOTE_BATCH,
        ]
        reply = await self.call(_scripts.CLAIM, [k.queue, k.active, k.paused, k.seq, k.cron], args)
        status, now, next_due, more = (int(v) for v in reply[:4])
        values = reply[4:]
        jobs = [
            Claimed(
                _text(values[i]),
                _text(values[i + 1]),
                values[i + 2],
                int(values[i + 3]),
                int(values[i + 4]),
                now,
                int(values[i + 5] or 0),
            )
            for i in range(0, len(values), 6)
        ]
        return Claim(jobs, status == 2, now, next_due if next_due >= 0 else None, bool(more))

    async def finish(self, run: Run, outcome: Outcome) -> int:
        """Record how ``run`` ended; -1 when the run no longer owned its job (nothing changed)."""
        o, k = self.options, self.queue.keys
        body = outcome.body or (dumps(outcome.record) if outcome.record else outcome.error)
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
            run.attempt,
            *_event_detail(outcome),
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
        if code == 3:  # sent again after a lost reply: the first FINISH recorded it
            code = 1
        elif code == -1:
            self.counters["stale"] += 1
            logger.warning(
                "%s: the run of %s ended (%s) after its lease expired and the job was returned; "
                "its outcome changes nothing",
                self.queue.name,
                run.job_id,
                outcome.kind,
            )
        if code != -1:
            self.counters[
                {"retry": "retried", "handback": "handed_back", "park": "parked"}.get(outcome.kind, outcome.kind)
            ] += 1
        outcome.code = int(code)
        return int(code)

    # -- the tick --------------------------------------------------------------------------

    async def tick(self) -> None:
        """Return expired runs; every third of a lease, renew own leases and write the heartbeat.

        The heartbeat (the worker's entry: its info, ``last_heartbeat``) is also written as soon as
        its info changes (a run started or ended). An idle worker's tick between them writes nothing:
        with the default 30 s lease it beats every 10 s, not every second.
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
        owned: list[str] = []
        renew = time.monotonic() - self.renewed_at >= o.worker_lease / 3
        if renew:
            owned = [v for run in list(self.running.values()) for v in (run.job_id, run.token)]
        beat = renew or info != self.beat_info
        returned, now = await _scripts.TICK(
            self.redis,
            [k.queue, k.active, k.seq, k.workers, k.completed, k.failed],
            [
                k.base,
                self.worker_id,
                int(o.worker_lease * 1000),
                self.queue.default_priority,
                RETURN_BATCH,
                info if beat else "",
                *owned,
            ],
        )
        if renew:
            self.renewed_at = time.monotonic()
        if beat:
            self.beat_info = info
        if not self.started_ms:
            self.started_ms = int(now)
        if returned:
            logger.warning("%s: %d run(s) whose lease expired returned to the queue", self.queue.name, returned)

    async def run_ticks(self) -> None:
        while True:
            await asyncio.sleep(self.options.tick_interval)
            try:
                await self.tick()
                worker_metrics().beat(self.queue.name)
            except (RedisError, *_redis_errors.TRANSIENT) as exc:
                logger.warning("%s: worker tick failed, will retry: %s", self.queue.name, _redis_errors.describe(exc))


def _event_detail(outcome: Outcome) -> tuple[str, str]:
    """What FINISH's event carries besides the attempt: a small result, or the error and its type."""
    if outcome.kind == "completed":
        result = dumps(outcome.record.get("result"))
        return (result if len(result) <= EVENT_RESULT_MAX else ""), ""
    if outcome.kind == "failed":
        return (outcome.record.get("error") or "")[:EVENT_TEXT_MAX], outcome.record.get("error_type") or ""
    return outcome.error[:EVENT_TEXT_MAX], ""


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else value
