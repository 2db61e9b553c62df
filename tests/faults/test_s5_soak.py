"""Scenario 5, soak: many no-op jobs through one queue at default retention. Redis memory after
the run is within a fixed bound of the empty-queue figure plus the records retention keeps, and
no key is left without a TTL or a live owner."""

from __future__ import annotations

import asyncio
import time

import pytest

from jobqueue import product_embedding_queue as embeddings
from jobqueue.constants import DEFAULT_KEEP_COMPLETED
from tests.faults import figures
from tests.faults.keyspace import audit_keyspace
from tests.faults.workers import SOAK_COUNTER, worker_env
from tests.support.waiting import WorkerProcess, wait_for
from tests.support.workers import counts

SCENARIO = 5
SETTINGS = "tests.faults.workers.NoopSettings"
# Allocator slack, hash tables sized for the peak, the scripts' cache: what is neither a job nor
# a record, and does not grow with the number of jobs run.
MEMORY_BOUND_BYTES = 2 * 1024 * 1024
MAX_WAITING = 20_000
CHUNK = 5_000


def used_memory(client) -> int:
    return int(client.info("memory")["used_memory"])


def retained_bytes(client) -> int:
    """What retention keeps: each ``done`` key, the ``completed`` set itself, and the events stream
    (bounded by ``JOBQUEUE_EVENTS_MAXLEN``, not by the number of jobs run)."""
    keys = embeddings.keys
    ids = [m.decode() for m in client.zrange(keys.completed, 0, -1)]
    pipe = client.pipeline(transaction=False)
    for job_id in ids:
        pipe.memory_usage(keys.done(job_id), samples=0)
    pipe.memory_usage(keys.completed, samples=0)
    pipe.memory_usage(keys.events, samples=0)
    return sum(v or 0 for v in pipe.execute())


@pytest.mark.timeout(figures.sized(180, 1200))
async def test_memory_stays_flat_and_no_key_leaks_after_a_soak(own_valkey):
    n = figures.sized(5_000, 200_000)
    server = own_valkey()
    admin = server.admin()
    env = worker_env(concurrency=10, poll_delay=0.01)
    workers = [WorkerProcess(SETTINGS, **env).start() for _ in range(2)]
    started = time.monotonic()
    try:
        await workers[0].wait_for(lambda: _workers_registered(admin, 2), timeout=30, what="the workers to start")
        baseline = used_memory(admin)
        for i in range(0, n, CHUNK):
            while (await embeddings.get_job_counts())["waiting"] > MAX_WAITING:
                await asyncio.sleep(0.05)
            await embeddings.add_bulk([{"product_id": f"soak-{j}"} for j in range(i, min(i + CHUNK, n))])
        await workers[0].wait_for(
            lambda: _ran(admin, n), timeout=max(60, n / 200), interval=0.2, what="every soak job to run"
        )
        await wait_for(lambda: _counts_are(counts(completed=min(n, DEFAULT_KEEP_COMPLETED))), timeout=30)
        after = used_memory(admin)
        retained = retained_bytes(admin)
        live_audit = audit_keyspace(admin)
    finally:
        for w in workers:
            w.stop()
    wall = time.monotonic() - started
    stopped_audit = audit_keyspace(admin)
    ran = int(admin.get(SOAK_COUNTER) or 0)
    delta = after - baseline
    figures.report(
        SCENARIO,
        jobs=n,
        lost=max(n - ran, 0),
        duplicates_unexplained=max(ran - n, 0),
        soak_jobs=n,
        used_memory_empty=baseline,
        used_memory_after=after,
        memory_delta_bytes=delta,
        retained_records=min(n, DEFAULT_KEEP_COMPLETED),
        retained_bytes=retained,
        other_growth_bytes=delta - retained,
        keys_left=stopped_audit.keys,
        stray_keys=len(live_audit.strays) + len(stopped_audit.strays),
        jobs_per_s=round(n / wall),
    )
    assert ran == n
    assert live_audit.strays == [] and stopped_audit.strays == [], (live_audit.strays[:10], stopped_audit.strays[:10])
    assert delta <= retained + MEMORY_BOUND_BYTES, (baseline, after, retained)


async def _workers_registered(admin, n):
    return admin.zcard(embeddings.keys.workers) >= n


async def _ran(admin, n):
    return int(admin.get(SOAK_COUNTER) or 0) >= n


async def _counts_are(expected):
    return await embeddings.get_job_counts() == expected
