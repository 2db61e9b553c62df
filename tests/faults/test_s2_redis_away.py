"""Scenario 2, Redis away: a Redis with append-only persistence is stopped for a few seconds and
started again while workers run and a producer keeps enqueueing. Enqueues during the outage raise
RedisUnavailableError within JOBQUEUE_REDIS_TIMEOUT, the health check follows, the workers resume
on their own, and every job that was accepted completes."""

from __future__ import annotations

import asyncio
import signal
import time

import jobqueue
from jobqueue import RedisUnavailableError
from jobqueue import product_embedding_queue as embeddings
from tests.faults import figures
from tests.faults.audit import records
from tests.faults.workers import JOB_MS_ENV, worker_env
from tests.support.waiting import WorkerProcess, wait_for

SCENARIO = 2
SETTINGS = "tests.faults.workers.StormSettings"
REDIS_TIMEOUT = 2.0
OUTAGE_S = 5.0


async def test_enqueues_fail_fast_while_redis_is_away_and_every_accepted_job_completes(own_valkey, monkeypatch):
    server = own_valkey(appendonly="yes", appendfsync="always")
    monkeypatch.setenv("JOBQUEUE_REDIS_TIMEOUT", str(REDIS_TIMEOUT))
    env = {JOB_MS_ENV: "10", **worker_env(concurrency=10, keep_completed=100_000, worker_lease=5, timeout=10)}
    accepted: list[str] = []
    refused: list[float] = []  # seconds each refused enqueue took
    refused_ids: list[str] = []
    other_errors: list[str] = []
    stop = asyncio.Event()

    async def produce() -> None:
        i = 0
        while not stop.is_set():
            began = time.monotonic()
            try:
                handle = await jobqueue.enqueue_product_embedding(f"away-{i}")
                accepted.append(handle.job_id)
            except RedisUnavailableError as exc:
                refused.append(time.monotonic() - began)
                refused_ids.append(f"product-embedding:away-{i}")
                assert "127.0.0.1" in str(exc)
            except Exception as exc:  # anything else is a finding, not a crash of the producer
                other_errors.append(repr(exc))
            i += 1
            await asyncio.sleep(0.01)

    workers = [WorkerProcess(SETTINGS, **env).start() for _ in range(2)]
    producer = asyncio.create_task(produce())
    health_false_after = health_true_after = frozen_s = None
    try:
        await workers[0].wait_for(lambda: _completed_at_least(50), timeout=30, what="work before the outage")
        stopped_at = time.monotonic()
        await asyncio.to_thread(server.stop)
        await wait_for(_unhealthy, timeout=REDIS_TIMEOUT + 5, what="the health check to go False")
        health_false_after = round(time.monotonic() - stopped_at, 2)
        await asyncio.sleep(OUTAGE_S)  # the outage itself: the producer keeps trying meanwhile
        await asyncio.to_thread(server.start)
        started_at = time.monotonic()
        await wait_for(jobqueue.check_queues_health, timeout=REDIS_TIMEOUT + 5, what="the health check to recover")
        health_true_after = round(time.monotonic() - started_at, 2)
        more = len(accepted) + 50
        await wait_for(lambda: _true(len(accepted) >= more), timeout=30, what="enqueues after the outage")
        # A Redis that accepts connections but does not answer (frozen): calls give up in time.
        refused_before = len(refused)
        frozen_at = time.monotonic()
        server.send_signal(signal.SIGSTOP)
        try:
            await wait_for(lambda: _true(len(refused) > refused_before), timeout=REDIS_TIMEOUT + 5, what="a timeout")
        finally:
            server.send_signal(signal.SIGCONT)
        frozen_s = round(time.monotonic() - frozen_at, 2)
        more = len(accepted) + 50
        await wait_for(lambda: _true(len(accepted) >= more), timeout=30, what="enqueues after the freeze")
        stop.set()
        await producer
        n = len(accepted)
        await workers[0].wait_for(lambda: _completed_at_least(n), timeout=60, what="every accepted job")
        alive = [w.proc.poll() is None for w in workers]
        dead_logs = [w.output()[-3000:] for w in workers if w.proc.poll() is not None]
    finally:
        stop.set()
        await asyncio.gather(producer, return_exceptions=True)
        for w in workers:
            w.stop()
    done = await records(accepted)
    lost = [j for j in accepted if done.get(j, {}).get("state") != "completed"]
    # A call that timed out against a frozen Redis may still have been applied when it woke up:
    # the caller cannot know (enqueueing the same id again is the safe retry: dedup).
    applied_anyway = [j for j in refused_ids if j in await records(refused_ids)]
    figures.report(
        SCENARIO,
        jobs=len(accepted),
        lost=len(lost),
        accepted=len(accepted),
        refused=len(refused),
        slowest_refusal_s=round(max(refused, default=0), 2),
        outage_s=OUTAGE_S,
        health_false_after_s=health_false_after,
        health_true_after_s=health_true_after,
        frozen_s=frozen_s,
        refused_but_applied=len(applied_anyway),
    )
    assert other_errors == []
    assert refused, "no enqueue met the outage"
    assert max(refused) <= REDIS_TIMEOUT + 0.5
    assert all(alive), f"a worker did not ride out the outage: {dead_logs}"
    assert lost == []
    assert (await embeddings.get_job_counts())["completed"] == len(accepted) + len(applied_anyway)


async def _completed_at_least(n):
    return (await embeddings.get_job_counts())["completed"] >= n


async def _unhealthy():
    return not await jobqueue.check_queues_health()


async def _true(value):
    return value
