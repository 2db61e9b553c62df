"""Scenario 4, poison jobs: a job that always raises fails after its attempts, spaced by the
backoff (no hot loop); a job whose stored payload no longer validates fails at once; a job naming
a function the worker does not have fails clearly. None of them takes the worker down."""

from __future__ import annotations

import itertools
import json

import pytest

import jobqueue
from jobqueue import product_embedding_queue as embeddings
from jobqueue.backend.connection import get_redis
from jobqueue.worker.backoff import exponential_backoff
from tests.faults import figures
from tests.faults.workers import EVENTS_KEY, parse_events, worker_env
from tests.support.waiting import WorkerProcess

SCENARIO = 4
SETTINGS = "tests.faults.workers.StormSettings"
ATTEMPTS = 4
BACKOFF_BASE = 0.2
ENV = worker_env(attempts=ATTEMPTS, backoff_base=BACKOFF_BASE, backoff_jitter=0, concurrency=2, worker_lease=2)


async def _state(job_id, state):
    return (await embeddings.get_job_state(job_id)) == state


async def test_a_job_that_always_raises_fails_after_its_attempts_at_the_backoff():
    poison = await jobqueue.enqueue_product_embedding("poison", triggered_by="always-fail")
    with WorkerProcess(SETTINGS, **ENV) as worker:
        await worker.wait_for(lambda: _state(poison.job_id, "failed"), timeout=30, what="the poison job to fail")
        # The worker goes on serving, and the poison job does not come back.
        after = await jobqueue.enqueue_product_embedding("after-the-poison")
        await worker.wait_for(lambda: _state(after.job_id, "completed"), timeout=20, what="the next job")
        alive = worker.proc.poll() is None
        log = worker.output()
    events = parse_events(await get_redis().lrange(EVENTS_KEY, 0, -1))
    starts = [e for e in events if e[1] == "poison" and e[0] == "start"]
    gaps = [round(b[4] - a[4], 3) for a, b in itertools.pairwise(starts)]
    delays = [exponential_backoff(n, base=BACKOFF_BASE, cap=600, jitter=0) for n in range(1, ATTEMPTS)]
    info = await embeddings.get_job(poison.job_id)
    gap_figure = ",".join(map(str, gaps))
    figures.report(SCENARIO, jobs=2, lost=0, poison_runs=len(starts), attempts=ATTEMPTS, gaps_s=gap_figure)
    assert alive, log[-3000:]
    assert [s[2] for s in starts] == list(range(1, ATTEMPTS + 1))
    assert all(gap >= delay for gap, delay in zip(gaps, delays, strict=True)), (gaps, delays)
    assert (info.state, info.attempts_made, info.error_type) == ("failed", ATTEMPTS, "RuntimeError")
    assert info.error == "RuntimeError: product poison failed on purpose (always-fail)"
    assert info.finished_at is not None and info.started_at is not None
    # The last attempt's traceback is in the worker's log, where the operator looks.
    assert "Traceback (most recent call last)" in log and "failed on purpose (always-fail)" in log
    with pytest.raises(jobqueue.JobFailedError, match="after 4 attempt"):
        await poison.result(timeout=1)


async def test_a_job_whose_stored_payload_no_longer_validates_fails_at_once():
    handle = await jobqueue.enqueue_product_embedding("stale-shape")
    key = embeddings.keys.arq_job(handle.job_id)
    job = json.loads(await get_redis().get(key))
    job["a"][0] = {"product_id": "stale-shape", "colour": "red"}  # a field this version does not know
    await get_redis().set(key, json.dumps(job))
    with WorkerProcess(SETTINGS, **ENV) as worker:
        await worker.wait_for(lambda: _state(handle.job_id, "failed"), timeout=30, what="the job to fail")
    info = await embeddings.get_job(handle.job_id)
    runs = [e for e in parse_events(await get_redis().lrange(EVENTS_KEY, 0, -1)) if e[1] == "stale-shape"]
    figures.report(SCENARIO, invalid_payload_attempts=info.attempts_made)
    assert (info.state, info.error_type, info.attempts_made) == ("failed", "InvalidJobError", 1)
    assert "colour" in info.error
    assert runs == []


async def test_a_job_naming_an_unknown_function_fails_clearly():
    handle = await jobqueue.enqueue_product_embedding("renamed")
    key = embeddings.keys.arq_job(handle.job_id)
    job = json.loads(await get_redis().get(key))
    job["f"] = "embed_product_v0"  # e.g. enqueued by an older release under another name
    await get_redis().set(key, json.dumps(job))
    with WorkerProcess(SETTINGS, **ENV) as worker:
        after = await jobqueue.enqueue_product_embedding("after-the-unknown-function")
        await worker.wait_for(lambda: _state(after.job_id, "completed"), timeout=20, what="the next job")
        alive = worker.proc.poll() is None
    info = await embeddings.get_job(handle.job_id)
    figures.report(SCENARIO, unknown_function_state=info.state if info else "gone")
    assert alive
    assert info is not None and info.state == "failed", "the job vanished without a record"
    assert "embed_product_v0" in info.error
