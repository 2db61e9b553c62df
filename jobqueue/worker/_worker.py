"""jobqueue's ``Worker``: an arq ``Worker`` that claims, runs and finishes the queue's jobs itself.

arq keeps the process: signals, graceful shutdown, ``--burst``, ``--watch``, ``--check``, health
checks, logging, and the settings class's arq cron jobs, which arq claims and runs from their own
zset (``jq:<queue>:cron``) as it always does. The queue's jobs never pass through arq's run path:
this class replaces one method of arq's, ``_poll_iteration``, with a loop that

- takes as many ready jobs as the worker has free slots in one script (CLAIM),
- runs each in a task of its own, keyed by its run token, and records its end with FINISH,
- waits, when it has free slots and nothing is ready, on Redis: a blocking pop of the queue's
  marker, which every script that makes a job ready writes (enqueue, retry, hand-back, rerun,
  promote, resume, the return of an expired run), and on a local timer for the next delayed job.

arq 0.28's command line builds the ``Worker`` its ``arq.worker`` module names, with no hook for
another class: importing ``jobqueue.worker`` (as every settings module does) names this class
there. It behaves exactly as arq's for settings that are not jobqueue's.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from typing import Any

import arq
import arq.worker
from redis.asyncio import Redis
from redis.exceptions import RedisError

from jobqueue._tasks import cancel_and_wait
from jobqueue.backend import _redis_errors, _sentinel
from jobqueue.backend._pool import tune_pool
from jobqueue.backend._redis_settings import SentinelRedisSettings, create_sentinel_pool, resolved
from jobqueue.settings import get_settings
from jobqueue.worker._runner import STATE_KEY, RunSpec, run_claimed
from jobqueue.worker._state import Claim, WorkerState

logger = logging.getLogger("jobqueue.worker")

ArqWorker = arq.worker.Worker
# The key in a worker's ctx that names the jobqueue Worker running it (checked at start-up).
WORKER_KEY = "jobqueue_worker"
# Most seconds one of arq's poll iterations lasts: arq's heartbeat and cron checks run between them.
ITERATION_S = 0.5
# An idle worker claims at least this often, without a wake-up: a safety net for a lost marker.
IDLE_CLAIM_S = 1.0
# The blocking pop on the queue's marker waits at most this long per call.
MARKER_BLOCK_S = 1.0


class Worker(ArqWorker):
    """An arq ``Worker`` that owns the runs of a jobqueue queue (see the module docstring)."""

    __signature__ = inspect.signature(ArqWorker)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.run_spec: RunSpec | None = None
        for name, function in list(self.functions.items()):
            spec = getattr(function.coroutine, "jobqueue_run", None)
            if isinstance(spec, RunSpec):
                self.run_spec = spec
                # Only the arq cron jobs stay arq's to run: nothing of arq's may run a queue job.
                del self.functions[name]
        self.ctx[WORKER_KEY] = self
        self._loop_state: _RunLoop | None = None
        self.stopping = False  # a stop was asked for: the loop ends even if a cancellation got lost

    async def main(self) -> None:
        self.stopping = False  # arq --watch runs the same Worker again after a reload
        if self._pool is None and self.redis_settings is not None:
            settings = resolved(self.redis_settings)
            if isinstance(settings, SentinelRedisSettings):  # arq's own Sentinel pool lacks our options
                self._pool = await create_sentinel_pool(
                    settings,
                    job_serializer=self.job_serializer,
                    job_deserializer=self.job_deserializer,
                    default_queue_name=self.queue_name,
                    expires_extra_ms=self.expires_extra_ms,
                )
        await super().main()

    def handle_sig(self, signum: Any) -> None:
        self.stopping = True
        super().handle_sig(signum)

    async def _wait_for_tasks_to_complete(self, signum: Any) -> None:
        await super()._wait_for_tasks_to_complete(signum)
        self.stopping = True

    async def _poll_iteration(self) -> None:
        if self.run_spec is None:
            await super()._poll_iteration()
            return
        if self.stopping:
            # arq cancelled the main task to stop; a cancellation absorbed on the way (Python 3.11's
            # asyncio.timeout inside a Redis read can) must not keep the worker running.
            raise asyncio.CancelledError
        state: WorkerState | None = self.ctx.get(STATE_KEY)
        if state is None:
            raise RuntimeError("jobqueue's worker state is missing: the settings class's on_startup did not run")
        if self._loop_state is None or self._loop_state.state is not state:
            if self._loop_state is not None:
                await self._loop_state.stop()
            self._loop_state = _RunLoop(self, state, self.run_spec)
        await self._loop_state.serve()
        if self.cron_jobs:
            await super()._poll_iteration()  # arq's own claim of its cron jobs, its heartbeat
        else:
            for key, task in list(self.tasks.items()):
                if task.done():
                    del self.tasks[key]
                    task.result()
            await self.heart_beat()

    async def close(self) -> None:
        if self._loop_state is not None:
            await self._loop_state.stop()
            self._loop_state = None
        await super().close()

    def __repr__(self) -> str:
        return f"<jobqueue {super().__repr__()[1:]}"


class _RunLoop:
    """The claim-run-wait loop of one worker, for one start of it (``--watch`` starts it again)."""

    def __init__(self, worker: Worker, state: WorkerState, spec: RunSpec) -> None:
        self.worker = worker
        self.state = state
        self.spec = spec
        self.woken = False  # a marker was popped, or a slot freed, since the last claim
        self.event = asyncio.Event()  # set by a wake-up or by the loop's own timer
        self.has_room = asyncio.Event()  # free slots, and picking allowed: the marker is worth popping
        self.next_due: float | None = None  # loop time the next delayed job falls due
        self.next_claim = 0.0  # loop time of the next claim without a wake-up
        self.listener: asyncio.Task[None] | None = None
        self.waiter: Redis | None = None

    def wake(self) -> None:
        """Have the loop claim again now."""
        self.woken = True
        self.event.set()

    def free_slots(self) -> int:
        worker = self.worker
        if not worker.allow_pick_jobs:
            return 0
        free = worker.max_jobs - worker.job_counter
        if worker.burst and worker.max_burst_jobs >= 0:
            free = min(free, worker.max_burst_jobs - worker._jobs_started())
        return max(free, 0)

    async def serve(self) -> None:
        """Claim and wait for ``ITERATION_S``; in burst mode, until nothing of the queue is left."""
        if self.listener is None:
            self.listener = asyncio.create_task(self._listen(), name=f"jobqueue-marker-{self.state.queue.name}")
        loop = asyncio.get_running_loop()
        worker = self.worker
        # As long as arq's own poll step at least: arq sleeps out the rest of a step between iterations.
        deadline = loop.time() + max(ITERATION_S, worker.poll_delay_s)
        while not worker.stopping:
            now = loop.time()
            free = self.free_slots()
            due = self.next_due is not None and now >= self.next_due
            if free and (self.woken or due or now >= self.next_claim):
                self.woken = False
                claim = await self.state.claim(free)
                self._start(claim)
                now = loop.time()
                self.next_claim = now + IDLE_CLAIM_S
                self.next_due = None if claim.next_due_ms is None else now + claim.next_due_ms / 1000
                if claim.jobs and (claim.more or len(claim.jobs) == free):
                    continue
                if worker.burst and not claim.jobs and not self.state.running and await self._drained():
                    return
            if worker.burst and 0 <= worker.max_burst_jobs <= worker._jobs_started():
                return
            free = self.free_slots()
            if free:
                self.has_room.set()
            else:
                self.has_room.clear()
            if now >= deadline:
                if not worker.burst:
                    return
                await worker.heart_beat()  # a burst worker stays here until done: arq's cron checks
                deadline = now + max(ITERATION_S, worker.poll_delay_s)
            timeout = deadline - now
            if free:
                timeout = min(timeout, self.next_claim - now)
                if self.next_due is not None:
                    timeout = min(timeout, self.next_due - now)
            if timeout > 0 and not (self.woken and free):  # woken while full: wait for a slot
                # A timer, not asyncio.timeout: on Python 3.11 a timeout that fires as the worker is
                # cancelled (SIGTERM) can absorb the cancellation, and the worker would never stop.
                alarm = loop.call_later(timeout, self.event.set)
                try:
                    await self.event.wait()
                finally:
                    alarm.cancel()
                    self.event.clear()

    async def _drained(self) -> bool:
        """Burst mode: nothing of the queue's is left, waiting, delayed or running anywhere."""
        return await self.state.redis.zcard(self.state.queue.keys.queue) == 0

    def _start(self, claim: Claim) -> None:
        worker = self.worker
        for claimed in claim.jobs:
            worker.job_counter += 1
            task = asyncio.create_task(self._run(claimed), name=f"jobqueue-run-{claimed.job_id}")
            worker.tasks[claimed.token] = task

    async def _run(self, claimed: Any) -> None:
        worker = self.worker
        try:
            outcome = await run_claimed(self.state, self.spec, worker.ctx, claimed)
        except asyncio.CancelledError:
            return  # a graceful stop: the job was handed back; arq's close() waits for this task
        finally:
            worker.job_counter -= 1
            self.wake()
        if outcome.kind == "completed":
            worker.jobs_complete += 1
        elif outcome.kind == "failed":
            worker.jobs_failed += 1
        elif outcome.kind == "retry":
            worker.jobs_retried += 1

    async def _listen(self) -> None:
        """Pop the queue's marker while the worker has room; each pop wakes the claim loop."""
        state = self.state
        marker = state.queue.keys.marker
        block = min(MARKER_BLOCK_S, max(get_settings().redis_timeout / 2, 0.1))
        # A connection of its own: a blocking call never shares the worker's pool with its runs.
        pool = _sentinel.pool_like(state.redis.connection_pool, max_connections=1)
        tune_pool(pool)
        self.waiter = Redis(connection_pool=pool)
        while True:
            await self.has_room.wait()
            try:
                popped = await self.waiter.bzpopmin(marker, block)
            except (RedisError, *_redis_errors.TRANSIENT) as exc:
                # The claim loop meets the same error and decides; here, only wait and try again.
                logger.debug("%s: waiting on the queue's marker failed: %s", state.queue.name, exc)
                await asyncio.sleep(block)
                continue
            if popped is None:
                continue
            if self.free_slots():
                self.wake()
            else:
                # Full since the pop began: leave the wake-up to another worker of the queue.
                await self.waiter.zadd(marker, {popped[1]: popped[2]}, lt=True)

    async def stop(self) -> None:
        await cancel_and_wait(self.listener)
        self.listener = None
        if self.waiter is not None:
            await self.waiter.aclose(close_connection_pool=True)
            self.waiter = None


def install() -> None:
    """Make arq's ``create_worker`` (and so the ``arq`` command) build jobqueue's ``Worker``."""
    arq.worker.Worker = Worker
    arq.Worker = Worker
