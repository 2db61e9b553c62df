"""Progress and logs from a handler: visible from another process while the job runs, validated,
fenced by the run's token, bounded, and removed wherever the job's record is removed."""

from __future__ import annotations

import contextlib
import json
from typing import Any

import pytest

import jobqueue
from jobqueue import product_embedding_queue as embeddings
from jobqueue.errors import InvalidJobError
from jobqueue.worker import build_worker_settings, progress
from jobqueue.worker._runner import RUN_KEY, STATE_KEY
from jobqueue.worker._state import Run, WorkerState
from tests.support.waiting import WorkerProcess
from tests.support.workers import behaviour_key, release_key, run_burst, settings_for
from tests.support.workers import test_options as options_for


async def _state(handle: Any, state: str) -> bool:
    return await handle.status() == state


async def _events(count: int) -> list[Any]:
    out = []
    async with contextlib.aclosing(embeddings.events("0")) as stream:
        async for event in stream:
            out.append(event)
            if len(out) == count:
                return out
    return out


async def test_progress_and_logs_are_visible_from_another_process_while_the_job_runs(redis_client):
    behaviour = {"progress": [10, {"step": "naming", "done": 2, "of": 6}], "logs": ["fetched", "grouped"]}
    await redis_client.set(behaviour_key("p-live"), json.dumps({**behaviour, "block": True}))
    handle = await jobqueue.enqueue_product_embedding("p-live")
    with WorkerProcess("tests.support.workers.EmbeddingTestSettings") as worker:

        async def logged() -> bool:
            return len(await embeddings.get_job_logs(handle.job_id)) == 2

        await worker.wait_for(logged, what="the job's two log lines")
        job = await embeddings.get_job(handle.job_id)
        assert job.state == "active" and job.progress == {"step": "naming", "done": 2, "of": 6}
        assert await embeddings.get_job_logs(handle.job_id) == ["fetched (try 1)", "grouped (try 1)"]
        await redis_client.set(release_key("p-live"), 1)
        await worker.wait_for(lambda: _state(handle, "completed"), what="the job to complete")
    done = await embeddings.get_job(handle.job_id)
    assert done.progress == {"step": "naming", "done": 2, "of": 6}  # kept with the record
    assert await embeddings.get_job_logs(handle.job_id, -1) == ["grouped (try 1)"]
    events = await _events(5)
    assert [e.name for e in events] == ["added", "active", "progress", "progress", "completed"]
    assert events[2].data == {"attempt": 1, "progress": 10}
    assert events[3].data["progress"] == {"step": "naming", "done": 2, "of": 6}


async def test_bad_progress_values_raise_a_clear_error_in_the_handler():
    errors: list[str] = []

    async def handler(ctx: dict[str, Any], payload: Any) -> None:
        for value in (101, -1, float("nan"), True, "half", [50], {"when": object()}, {"big": "x" * 5000}):
            try:
                await jobqueue.update_progress(ctx, value)
            except InvalidJobError as exc:
                errors.append(str(exc))
        for message in (None, 3):
            try:
                await jobqueue.add_job_log(ctx, message)  # type: ignore[arg-type]
            except InvalidJobError as exc:
                errors.append(str(exc))
        assert await jobqueue.update_progress(ctx, 100)
        assert await jobqueue.update_progress(ctx, 12.5)

    handle = await jobqueue.enqueue_product_embedding("p-bad")
    await run_burst(build_worker_settings("product-embedding", handler, options=options_for()))
    assert await handle.status() == "completed"
    assert (await embeddings.get_job(handle.job_id)).progress == 12.5
    assert errors[:2] == [
        "progress must be a number from 0 to 100, got 101",
        "progress must be a number from 0 to 100, got -1",
    ]
    assert errors[2] == "progress must be a number from 0 to 100, got nan"
    kinds = "progress must be a number from 0 to 100 or a JSON object, got "
    assert errors[3:6] == [kinds + "bool", kinds + "str", kinds + "list"]
    assert errors[6].startswith("progress must be a JSON object:")
    assert errors[7] == "progress must be at most 4096 bytes as JSON, got 5010"
    assert errors[8:] == ["add_job_log takes a str message, got NoneType", "add_job_log takes a str message, got int"]


async def test_progress_outside_a_jobqueue_run_is_refused():
    with pytest.raises(InvalidJobError, match="takes the ctx of a job run by a jobqueue worker"):
        await jobqueue.update_progress({"job_id": "product-embedding:x"}, 50)


async def test_a_run_that_no_longer_owns_its_job_writes_no_progress_or_log(redis_client):
    handle = await jobqueue.enqueue_product_embedding("p-stale")
    state = WorkerState(embeddings, options_for(), "test-worker", redis_client)
    (claimed,) = (await state.claim(1)).jobs
    stale = {STATE_KEY: state, RUN_KEY: Run(handle.job_id, "an-older-run", 1, 0, 2)}
    assert not await jobqueue.update_progress(stale, 50)
    assert not await jobqueue.add_job_log(stale, "late")
    assert (await embeddings.get_job(handle.job_id)).progress is None
    assert await embeddings.get_job_logs(handle.job_id) == []
    owner = {STATE_KEY: state, RUN_KEY: Run(handle.job_id, claimed.token, 1, 0, 2)}
    assert await jobqueue.update_progress(owner, 50)
    assert (await embeddings.get_job(handle.job_id)).progress == 50
    assert [e.name for e in await _events(3)] == ["added", "active", "progress"]


async def test_a_jobs_log_keeps_its_last_lines(redis_client, monkeypatch):
    monkeypatch.setattr(progress, "LOG_LINES_KEPT", 3)
    monkeypatch.setattr(progress, "LOG_LINE_MAX", 10)
    handle = await jobqueue.enqueue_product_embedding("p-long")
    state = WorkerState(embeddings, options_for(), "test-worker", redis_client)
    (claimed,) = (await state.claim(1)).jobs
    ctx = {STATE_KEY: state, RUN_KEY: Run(handle.job_id, claimed.token, 1, 0, 2)}
    for i in range(6):
        assert await jobqueue.add_job_log(ctx, f"line {i} and more words")
    assert await embeddings.get_job_logs(handle.job_id) == ["line 3 and", "line 4 and", "line 5 and"]


async def _keys_of(redis_client: Any, pid: str) -> set[str]:
    job_id = f"product-embedding:{pid}"
    keys = [embeddings.keys.progress(job_id), embeddings.keys.logs(job_id)]
    return {k for k in keys if await redis_client.exists(k)}


async def _with_progress(redis_client: Any, pid: str, **behaviour: Any) -> None:
    await redis_client.set(behaviour_key(pid), json.dumps({"progress": [5], "logs": ["x"], **behaviour}))
    await jobqueue.enqueue_product_embedding(pid)


async def test_progress_and_logs_go_wherever_the_jobs_record_goes(redis_client):
    # retention: a queue that keeps one completed record drops the older one's progress and logs
    for pid in ("p-old", "p-new"):
        await _with_progress(redis_client, pid)
        await run_burst(settings_for(keep_completed=1))
    assert await _keys_of(redis_client, "p-old") == set()
    assert len(await _keys_of(redis_client, "p-new")) == 2
    # clean of completed records
    assert await embeddings.clean(0, 0, "completed") == ["product-embedding:p-new"]
    assert await _keys_of(redis_client, "p-new") == set()
    # remove_job of a failed job
    await _with_progress(redis_client, "p-removed", permanent=True)
    await run_burst(settings_for())
    assert len(await _keys_of(redis_client, "p-removed")) == 2
    assert await embeddings.remove_job("product-embedding:p-removed")
    assert await _keys_of(redis_client, "p-removed") == set()
    # drain of a job waiting for its retry, after an attempt that reported
    await _with_progress(redis_client, "p-drained", fail=1)
    await run_burst(settings_for(backoff_base=60), max_burst_jobs=1)
    assert await embeddings.get_job_state("product-embedding:p-drained") == "delayed"
    assert len(await _keys_of(redis_client, "p-drained")) == 2
    assert await embeddings.drain(delayed=True) == 1
    assert await _keys_of(redis_client, "p-drained") == set()
    # a new job under the id of a finished one starts with none
    await _with_progress(redis_client, "p-again")
    await run_burst(settings_for())
    await redis_client.delete(behaviour_key("p-again"))
    await jobqueue.enqueue_product_embedding("p-again")
    assert await _keys_of(redis_client, "p-again") == set()
    assert (await embeddings.get_job("product-embedding:p-again")).progress is None


async def test_a_job_with_no_log_has_no_lines():
    assert await embeddings.get_job_logs("product-embedding:never") == []
