"""Scenario 1, crash storm: jobs of mixed priorities, a tenth failing once, across three worker
processes while one of them is SIGKILLed and replaced every couple of seconds. Every job must
complete, counts must be exact, and every extra run must be explained by a kill or a failure."""

from __future__ import annotations

import asyncio
import random
import time

import pytest

from jobqueue import product_embedding_queue as embeddings
from jobqueue.backend.connection import get_redis
from tests.faults import figures
from tests.faults.audit import audit_runs, records
from tests.faults.workers import EVENTS_KEY, JOB_MS_ENV, parse_events, worker_env
from tests.support.waiting import WorkerProcess
from tests.support.workers import counts

SCENARIO = 1
SETTINGS = "tests.faults.workers.StormSettings"
WORKERS = 3
CONCURRENCY = 10


def storm_env(jobs: int) -> dict[str, str]:
    return {
        JOB_MS_ENV: "100",
        **worker_env(
            concurrency=CONCURRENCY,
            attempts=20,  # a job may be caught by several kills; each costs one attempt
            backoff_base=0.05,
            backoff_max=0.5,
            backoff_jitter=0,
            timeout=5,
            poll_delay=0.01,
            tick_interval=0.1,
            worker_lease=2,
            keep_completed=jobs + 1000,
        ),
    }


@pytest.mark.timeout(figures.sized(180, 900))
async def test_crash_storm_loses_no_job_and_explains_every_extra_run():
    n = figures.sized(1500, 10_000)
    kill_every = figures.sized(15, 20) / 10
    env = storm_env(n)
    ids = [f"storm-{i}" for i in range(n)]
    fail_once = {p for i, p in enumerate(ids) if i % 10 == 3}
    started = time.monotonic()
    for i in range(0, n, 1000):
        chunk = [
            {"product_id": p, "triggered_by": "fail-once" if p in fail_once else "storm"} for p in ids[i : i + 1000]
        ]
        for priority in range(1, 11):
            await embeddings.add_bulk(chunk[priority - 1 :: 10], priority=priority)

    workers = [WorkerProcess(SETTINGS, **env).start() for _ in range(WORKERS)]
    retired: list[WorkerProcess] = []
    killed: set[int] = set()
    rng = random.Random(n)

    async def completed() -> int:
        return (await embeddings.get_job_counts())["completed"]

    storm_s, stalled = 0.0, None
    try:
        # Kill while most of the work is still ahead; then let the survivors drain the queue.
        await workers[0].wait_for(completed, timeout=60, what="the first job to complete")
        next_kill = time.monotonic() + kill_every
        while await completed() < n * 0.9:
            assert time.monotonic() - started < 600, "the storm did not get 90% done in 10 minutes"
            if time.monotonic() >= next_kill:
                victim = workers.pop(rng.randrange(len(workers)))
                victim.kill()
                killed.add(victim.pid)
                retired.append(victim)
                workers.append(WorkerProcess(SETTINGS, **env).start())
                next_kill = time.monotonic() + kill_every
            await asyncio.sleep(0.05)
        storm_s = time.monotonic() - started
        try:
            await workers[0].wait_for(
                lambda: _counts_are(counts(completed=n)), timeout=120, interval=0.2, what="every job to complete"
            )
        except AssertionError as exc:
            stalled = f"{exc}"[:3000] + f"\ncounts: {await embeddings.get_job_counts()}"
    finally:
        for w in workers + retired:
            w.stop()
    wall = time.monotonic() - started

    done = await records([f"product-embedding:{p}" for p in ids])
    attempts = {r["payload"]["product_id"]: r["attempts"] for r in done.values()}
    events = parse_events(await get_redis().lrange(EVENTS_KEY, 0, -1))
    audit = audit_runs(events, killed=killed, fail_once=fail_once, attempts=attempts)
    final = await embeddings.get_job_counts()
    lost = n - sum(1 for r in done.values() if r["state"] == "completed")
    figures.report(
        SCENARIO,
        jobs=n,
        lost=lost,
        duplicates_unexplained=len(audit.unexplained),
        kills=len(killed),
        runs=audit.runs,
        extra_runs=audit.extra_runs,
        crash_runs=audit.crash_runs,
        failed_once=len(fail_once),
        storm_s=round(storm_s, 1),
        wall_s=round(wall, 1),
    )
    assert stalled is None, stalled
    assert final == counts(completed=n)
    assert lost == 0
    assert audit.unexplained == [], audit.unexplained[:20]
    # Each kill interrupts at most the runs its worker had in flight.
    assert audit.crash_runs <= len(killed) * CONCURRENCY
    assert audit.extra_runs == audit.crash_runs + len(fail_once)


async def _counts_are(expected):
    return await embeddings.get_job_counts() == expected
