"""Each queue's events stream: written by the scripts with each transition, read by ``queue.events()``
(resumable from an id), tailed by ``jobqueue events``, and what ``JobHandle.result()`` waits on."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from typing import Any

import pytest

import jobqueue
from jobqueue import product_embedding_queue as embeddings
from jobqueue.cli import run
from jobqueue.errors import InvalidJobError
from jobqueue.queue import _result_wait
from jobqueue.queue.events import JobEvent
from jobqueue.queue.queue import Queue
from jobqueue.settings import get_settings
from tests.support.waiting import WorkerProcess, wait_for
from tests.support.workers import RunningWorker, behaviour_key, release_key, run_burst, settings_for

EVENTS_KEY = embeddings.keys.events


async def read(count: int, since: str = "0", timeout: float = 10) -> list[JobEvent]:
    """The first ``count`` events after ``since``."""
    out: list[JobEvent] = []
    async with asyncio.timeout(timeout), contextlib.aclosing(embeddings.events(since)) as stream:
        async for event in stream:
            out.append(event)
            if len(out) == count:
                return out
    return out


def names(events: list[JobEvent], job_id: str | None = None) -> list[str]:
    return [e.name for e in events if job_id is None or e.job_id == job_id]


async def test_a_job_retried_then_completed_emits_its_events_in_order(redis_client):
    await redis_client.set(behaviour_key("e-retry"), json.dumps({"fail": 1}))
    handle = await jobqueue.enqueue_product_embedding("e-retry", priority=4)
    await run_burst(settings_for(backoff_base=0.01))
    events = await read(5)
    assert names(events) == ["added", "active", "retrying", "active", "completed"]
    assert {e.job_id for e in events} == {handle.job_id}
    added, active1, retrying, active2, completed = events
    assert added.data == {"priority": 4}
    assert active1.data == {"attempt": 1} and active2.data == {"attempt": 2}
    assert retrying.data == {"attempt": 1, "error": "RuntimeError: transient failure 1", "delay": 10}
    assert completed.data["attempt"] == 2 and completed.data["result"]["product_id"] == "e-retry"
    assert [e.id for e in events] == sorted((e.id for e in events), key=lambda i: tuple(map(int, i.split("-"))))
    assert all(e.timestamp is not None and abs(e.timestamp.timestamp() - time.time()) < 60 for e in events)


async def test_a_job_that_ends_failed_emits_failed_and_never_for_its_retried_attempt(redis_client):
    await redis_client.set(behaviour_key("e-fail"), json.dumps({"fail": 9}))
    await jobqueue.enqueue_product_embedding("e-fail", delay=0.01)
    await run_burst(settings_for(attempts=2, backoff_base=0.01))
    events = await read(5)
    assert names(events) == ["added", "active", "retrying", "active", "failed"]
    assert "due" in events[0].data
    failed = events[4]
    assert failed.data == {"attempt": 2, "error": "RuntimeError: transient failure 2", "error_type": "RuntimeError"}


async def test_a_run_returned_after_its_worker_was_killed_emits_stalled(redis_client):
    await redis_client.set(behaviour_key("e-killed"), json.dumps({"block": True}))
    handle = await jobqueue.enqueue_product_embedding("e-killed")
    settings = "tests.support.workers.EmbeddingTestSettings"
    with WorkerProcess(settings) as first:
        await first.wait_for(lambda: _state(handle, "active"), timeout=20, what="the job to start")
        first.kill()
    await redis_client.set(release_key("e-killed"), 1)
    with WorkerProcess(settings) as second:
        await second.wait_for(lambda: _state(handle, "completed"), timeout=30, what="the job to run again")
    events = await read(5)
    assert names(events) == ["added", "active", "stalled", "active", "completed"]
    assert events[2].data == {"attempt": 1} and events[3].data == {"attempt": 2}


async def _state(handle: Any, state: str) -> bool:
    return await handle.status() == state


async def test_events_resume_after_an_id_without_loss():
    for i in range(3):
        await jobqueue.enqueue_product_embedding(f"e-resume-{i}")
    first = await read(2)
    for i in range(3, 6):
        await jobqueue.enqueue_product_embedding(f"e-resume-{i}")
    rest = await read(4, since=first[-1].id)
    assert [e.job_id for e in first + rest] == [f"product-embedding:e-resume-{i}" for i in range(6)]
    assert names(first + rest) == ["added"] * 6


async def test_events_since_now_start_with_the_next_event():
    await jobqueue.enqueue_product_embedding("e-before")
    stream = embeddings.events()
    try:
        nxt = asyncio.create_task(anext(stream))
        # Enqueue until the reader has an event: whenever its first read began, what came before
        # it (e-before) is never delivered, and the first event is one enqueued after.
        for i in range(200):
            await jobqueue.enqueue_product_embedding(f"e-after-{i}")
            done, _ = await asyncio.wait({nxt}, timeout=0.05)
            if done:
                break
        event = await nxt
    finally:
        await stream.aclose()
    assert event.name == "added" and event.job_id.startswith("product-embedding:e-after-")


async def test_remove_drain_and_an_enqueue_of_an_active_job_emit_their_events(redis_client):
    await jobqueue.enqueue_product_embedding("e-removed", delay=60)
    await jobqueue.enqueue_product_embedding("e-drained")
    assert await embeddings.remove_job("product-embedding:e-removed")
    assert await embeddings.drain() == 1
    await redis_client.set(behaviour_key("e-busy"), json.dumps({"block": True}))
    handle = await jobqueue.enqueue_product_embedding("e-busy")
    async with RunningWorker(settings_for()):
        await wait_for(lambda: _state(handle, "active"), what="the job to start")
        again = await jobqueue.enqueue_product_embedding("e-busy")
        assert again.rerun
        await redis_client.set(release_key("e-busy"), 1)
        await wait_for(lambda: _state(handle, "completed"), what="the rerun to complete")
    events = await read(11)
    assert [(e.name, e.job_id.split(":")[1]) for e in events] == [
        ("added", "e-removed"),
        ("added", "e-drained"),
        ("removed", "e-removed"),
        ("removed", "e-drained"),
        ("added", "e-busy"),
        ("active", "e-busy"),
        ("rerun", "e-busy"),
        ("completed", "e-busy"),
        ("added", "e-busy"),
        ("active", "e-busy"),
        ("completed", "e-busy"),
    ]


async def test_the_stream_is_bounded_by_jobqueue_events_maxlen(redis_client, monkeypatch):
    monkeypatch.setenv("JOBQUEUE_EVENTS_MAXLEN", "10")
    get_settings.cache_clear()
    await jobqueue.enqueue_product_embeddings([f"e-many-{i}" for i in range(2000)])
    # MAXLEN ~ trims whole stream nodes (100 entries each by default): about 10, never the 2000.
    assert 10 <= await redis_client.xlen(EVENTS_KEY) <= 200


async def test_no_events_are_written_with_maxlen_0_and_result_still_returns(redis_client, monkeypatch):
    monkeypatch.setenv("JOBQUEUE_EVENTS_MAXLEN", "0")
    get_settings.cache_clear()
    handle = await jobqueue.enqueue_product_embedding("e-off")
    await run_burst(settings_for())
    assert (await handle.result(timeout=5)).product_id == "e-off"
    assert not await redis_client.exists(EVENTS_KEY)


async def test_result_wakes_on_the_completed_event_without_polling(redis_client, monkeypatch):
    looks = 0
    look = Queue._look

    async def counted(self: Queue, job_id: str) -> Any:
        nonlocal looks
        looks += 1
        return await look(self, job_id)

    monkeypatch.setattr(Queue, "_look", counted)
    await redis_client.set(behaviour_key("e-wait"), json.dumps({"block": True}))
    handle = await jobqueue.enqueue_product_embedding("e-wait")
    async with RunningWorker(settings_for()):
        await wait_for(lambda: _state(handle, "active"), what="the job to start")
        waiter = asyncio.create_task(handle.result(timeout=10))
        await wait_for(lambda: _listening(handle.job_id), what="result() to wait on the events")
        await asyncio.sleep(0.3)  # result() sits on its event meanwhile, it does not poll
        await redis_client.set(release_key("e-wait"), 1)
        result = await waiter
        returned = time.time()
    assert result.product_id == "e-wait"
    (completed,) = [e for e in await read(3) if e.name == "completed"]
    assert returned - completed.timestamp.timestamp() < 0.2  # woken by the event (issue 17 asks 50 ms)
    assert looks == 3  # before listening, once the listener is ready, once woken
    assert _result_wait._listeners == {}  # the listener stopped with its last caller


async def _listening(job_id: str) -> bool:
    listener = _result_wait._listeners.get(EVENTS_KEY)
    return listener is not None and listener.ready.is_set() and job_id in listener.waiters


async def test_results_of_many_jobs_share_one_listener(redis_client):
    handles = [await jobqueue.enqueue_product_embedding(f"e-many-wait-{i}") for i in range(20)]
    waiters = [asyncio.create_task(h.result(timeout=10)) for h in handles]
    await wait_for(lambda: _all_listening(len(handles)), what="every result() to wait")
    assert len(_result_wait._listeners) == 1
    await run_burst(settings_for(concurrency=5))
    results = await asyncio.gather(*waiters)
    assert [r.product_id for r in results] == [f"e-many-wait-{i}" for i in range(20)]
    assert _result_wait._listeners == {}


async def _all_listening(n: int) -> bool:
    listener = _result_wait._listeners.get(EVENTS_KEY)
    return listener is not None and len(listener.waiters) == n


async def test_a_bad_since_is_refused():
    with pytest.raises(InvalidJobError, match="since must be"):
        await anext(embeddings.events("yesterday"))


def test_the_events_command_prints_the_events_as_json_lines(redis_url, capsys):
    async def enqueue() -> None:
        await jobqueue.enqueue_product_embedding("e-cli-1")
        await jobqueue.enqueue_product_embedding("e-cli-2")
        await jobqueue.close_queues()

    asyncio.run(enqueue())
    _run_cli("events", "product-embedding", "--since", "0", "--count", "2", "--json")
    out = capsys.readouterr().out.splitlines()
    rows = [json.loads(line) for line in out]
    assert [(r["name"], r["job_id"]) for r in rows] == [
        ("added", "product-embedding:e-cli-1"),
        ("added", "product-embedding:e-cli-2"),
    ]
    _run_cli("events", "product-embedding", "--since", rows[0]["id"], "--count", "1")
    (line,) = capsys.readouterr().out.splitlines()
    assert "added" in line and "product-embedding:e-cli-2" in line and "priority=2" in line


def _run_cli(*args: str) -> None:
    try:
        run(list(args))
    except SystemExit as exc:
        assert exc.code in (0, None)


async def test_a_cancelled_result_call_stops_and_leaves_no_listener():
    handle = await jobqueue.enqueue_product_embedding("e-never-run")
    waiter = asyncio.create_task(handle.result())
    await wait_for(lambda: _listening(handle.job_id), what="result() to wait on the events")
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(waiter, 2)
    assert _result_wait._listeners == {}
