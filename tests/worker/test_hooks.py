"""Worker hooks: ``on_completed`` and ``on_failed`` run once per outcome, in the worker, after FINISH.

A hook sees the job as recorded; it never runs for a retried attempt or a stale run, and a hook that
raises or hangs is logged and bounded without changing the job's outcome.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

import pytest

import jobqueue
from jobqueue import product_embedding_queue as embeddings
from jobqueue.errors import ConfigurationError
from jobqueue.worker import _hooks, build_worker_settings
from jobqueue.worker._state import Outcome, Run, WorkerState
from tests.support.waiting import WorkerProcess
from tests.support.workers import behaviour_key, hooks_called, record_handler, run_burst
from tests.support.workers import test_options as options_for


async def _finished(*job_ids: str) -> bool:
    states = [await embeddings.get_job_state(j) for j in job_ids]
    return all(s in ("completed", "failed") for s in states)


async def test_each_outcome_calls_its_hook_once_in_the_worker_process(redis_client):
    await redis_client.set(behaviour_key("h-retried"), json.dumps({"fail": 1}))
    await redis_client.set(behaviour_key("h-permanent"), json.dumps({"permanent": True}))
    await redis_client.set(behaviour_key("h-exhausted"), json.dumps({"fail": 9}))
    ids = [
        (await jobqueue.enqueue_product_embedding(p)).job_id
        for p in ("h-ok", "h-retried", "h-permanent", "h-exhausted")
    ]
    with WorkerProcess("tests.support.workers.EmbeddingHookSettings") as worker:
        await worker.wait_for(lambda: _finished(*ids), timeout=30, what="every job to finish")

        async def four_hooks() -> list[dict[str, Any]] | None:
            called = await hooks_called(redis_client)
            return called if len(called) >= 4 else None

        called = await worker.wait_for(four_hooks, timeout=10, what="four hook calls")
    by_job = {c["job_id"]: c for c in called}
    assert len(called) == 4 and sorted(by_job) == sorted(ids)  # once per outcome: none for the retried attempt
    assert {c["pid"] for c in called} == {worker.pid}
    ok, retried, permanent, exhausted = (by_job[i] for i in ids)
    assert ok["hook"] == retried["hook"] == "completed"
    assert ok["state"] == "completed" and ok["finished"]
    assert ok["result"]["product_id"] == "h-ok" and ok["result"]["text_hash"] == "hash-h-ok"
    assert permanent["hook"] == "failed" and permanent["state"] == "failed"
    assert permanent["error"] == "PermanentJobError: product h-permanent cannot be embedded"
    assert permanent["error_type"] == "PermanentJobError" and permanent["attempts"] == 1
    assert exhausted["hook"] == "failed" and exhausted["error"] == "RuntimeError: transient failure 2"
    assert exhausted["attempts"] == 2


async def test_a_hook_that_raises_is_logged_and_the_job_stays_completed(redis_client, caplog):
    calls: list[str] = []

    async def broken(ctx: dict[str, Any], job: Any, result: Any) -> None:
        calls.append(job.job_id)
        raise RuntimeError("the hook is broken")

    settings = build_worker_settings("product-embedding", record_handler, options=options_for(), on_completed=broken)
    handle = await jobqueue.enqueue_product_embedding("h-raises")
    with caplog.at_level(logging.ERROR, logger="jobqueue.worker"):
        await run_burst(settings)
    assert calls == [handle.job_id]
    assert await handle.status() == "completed"
    assert (await handle.result(timeout=1)).product_id == "h-raises"
    assert "the on_completed hook raised" in caplog.text and "the hook is broken" in caplog.text


async def test_a_hook_that_hangs_is_cancelled_after_its_timeout(redis_client, caplog, monkeypatch):
    monkeypatch.setattr(_hooks, "HOOK_TIMEOUT_S", 0.2)
    cancelled = asyncio.Event()

    async def hangs(ctx: dict[str, Any], job: Any, error: str) -> None:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    await redis_client.set(behaviour_key("h-hangs"), json.dumps({"permanent": True}))
    settings = build_worker_settings("product-embedding", record_handler, options=options_for(), on_failed=hangs)
    handle = await jobqueue.enqueue_product_embedding("h-hangs")
    started = time.monotonic()
    with caplog.at_level(logging.ERROR, logger="jobqueue.worker"):
        await run_burst(settings)
    assert time.monotonic() - started < 5
    assert cancelled.is_set()
    assert await handle.status() == "failed"
    assert "the on_failed hook did not finish within 0.2s" in caplog.text


async def test_a_stale_finish_gets_no_hook(redis_client):
    calls: list[Any] = []

    async def completed(ctx: dict[str, Any], job: Any, result: Any) -> None:
        calls.append((job.job_id, job.state, result))

    handle = await jobqueue.enqueue_product_embedding("h-stale")
    state = WorkerState(
        embeddings, options_for(), "test-worker", redis_client, hooks=_hooks.WorkerHooks(on_completed=completed)
    )
    claim = await state.claim(1)
    (claimed,) = claim.jobs
    record = {"id": handle.job_id, "queue": embeddings.name, "state": "completed", "attempts": 1, "result": None}

    stale = Run(handle.job_id, "not-the-owner", 1, 0, 2)
    stale_outcome = Outcome("completed", {**record, "run": stale.token})
    assert await state.finish(stale, stale_outcome) == -1
    await _hooks.run_hooks(state, {}, stale, stale_outcome)
    assert calls == []

    owner = Run(handle.job_id, claimed.token, 1, 0, 2)
    outcome = Outcome("completed", {**record, "run": owner.token})
    assert await state.finish(owner, outcome) == 1
    await _hooks.run_hooks(state, {}, owner, outcome)
    assert calls == [(handle.job_id, "completed", None)]


def test_a_hook_that_is_not_callable_is_refused_when_the_settings_are_built():
    with pytest.raises(ConfigurationError, match="on_failed must be an async callable"):
        build_worker_settings("product-embedding", record_handler, options=options_for(), on_failed="log it")
