"""Scenario 6, duplicates and races: a reminder enqueued 100 times at once, and reminders whose
worker dies between sending and marking them sent, reach a receiver that honours Idempotency-Key
exactly once each; a product enqueued 50 times while its embedding runs runs exactly once more,
with the newest payload."""

from __future__ import annotations

import asyncio
import json
from collections import defaultdict

import pytest

import jobqueue
from jobqueue import reminder_dispatch_queue as reminders
from tests.faults import figures
from tests.support.waiting import WorkerProcess, wait_for
from tests.support.workers import behaviour_key, release_key, runs

SCENARIO = 6
CONTENT = {"title": "Birthday Reminder", "body": "Sarah's birthday is tomorrow!"}
PAST = "2025-12-22T09:00:00Z"


@pytest.fixture
def push(receiver, core_env, monkeypatch):
    monkeypatch.setenv("REMINDER_WEBHOOK_URL_PUSH", receiver.route("/push", 200))
    monkeypatch.setenv("REMINDER_STALE_AFTER", "1")
    return receiver


def deliveries(receiver) -> dict[str, list[bytes]]:
    by_key: dict[str, list[bytes]] = defaultdict(list)
    for request in receiver.requests:
        by_key[request.headers["Idempotency-Key"]].append(request.body)
    return by_key


async def _enqueue(schedule_id):
    return await jobqueue.enqueue_reminder_dispatch(schedule_id, "u1", "PUSH", CONTENT, PAST)


async def _all_status(store, ids, status):
    return all([(await store.get_schedule(i)).status == status for i in ids])


async def _settled():
    c = await reminders.get_job_counts()
    return c["waiting"] == c["active"] == c["delayed"] == 0


async def test_a_reminder_enqueued_100_times_at_once_is_delivered_once(store, push):
    schedules = [f"burst-{i}" for i in range(figures.sized(5, 20))]
    for s in schedules:
        await store.upsert_schedule(s, user_id="u1", channel="PUSH")
    with WorkerProcess("workers.RemindersSettings") as a, WorkerProcess("workers.RemindersSettings") as b:
        handles = await asyncio.gather(*(_enqueue(s) for s in schedules for _ in range(100)))
        await a.wait_for(lambda: _all_status(store, schedules, "SENT"), timeout=30, what="every reminder sent")
        await b.wait_for(_settled, timeout=30, what="every job to settle")
    got = deliveries(push)
    extra = sum(len(bodies) - 1 for bodies in got.values())
    figures.report(
        SCENARIO,
        jobs=sum(h.created for h in handles),
        duplicates_unexplained=extra,
        reminder_enqueues=len(handles),
        reminder_jobs_created=sum(h.created for h in handles),
        reminder_deliveries=len(push.requests),
    )
    assert sorted(got) == sorted(schedules)
    assert extra == 0


async def test_reminders_whose_worker_dies_between_send_and_mark_are_resent_under_the_same_key(store, push):
    schedules = [f"crash-{i}" for i in range(figures.sized(5, 10))]
    for s in schedules:
        await store.upsert_schedule(s, user_id="u1", channel="PUSH")
    push.hold_next("/push", len(schedules))  # they arrive; the answers wait until the worker is dead
    for s in schedules:
        await _enqueue(s)
    doomed = WorkerProcess("workers.RemindersSettings").start()
    try:
        await doomed.wait_for(lambda: _true(len(push.requests) >= len(schedules)), timeout=30, what="the sends")
        doomed.kill()
    finally:
        doomed.stop()
    with WorkerProcess("workers.RemindersSettings") as survivor:
        await survivor.wait_for(lambda: _all_status(store, schedules, "SENT"), timeout=30, what="the re-sends")
        await wait_for(_settled, timeout=30, what="every job to settle")
    got = deliveries(push)
    # A resend must be the same notification under the same key: a receiver that honours the key
    # delivers each once. Anything else would reach the user twice.
    unexplained = sum(1 for bodies in got.values() if len({json.dumps(json.loads(b)) for b in bodies}) != 1)
    unexplained += sum(max(len(bodies) - 2, 0) for bodies in got.values())  # more than the crashed send and one
    figures.report(
        SCENARIO,
        jobs=len(schedules),
        duplicates_unexplained=unexplained,
        crashed_sends=len(schedules),
        resends_same_key=sum(len(b) - 1 for b in got.values()),
        deliveries_after_key_dedup=len(got),
    )
    assert sorted(got) == sorted(schedules)
    assert unexplained == 0
    for s in schedules:
        assert (await store.get_schedule(s)).attempts == 2


async def test_a_product_enqueued_50_times_while_it_runs_runs_once_more_with_the_newest_payload(redis_client):
    await redis_client.set(behaviour_key("race"), json.dumps({"block": True}))
    first = await jobqueue.enqueue_product_embedding("race", triggered_by="v0")
    with WorkerProcess("tests.support.workers.EmbeddingTestSettings") as worker:
        await worker.wait_for(lambda: _runs_at_least(redis_client, 1), timeout=20, what="the first run")
        racing = await asyncio.gather(
            *(jobqueue.enqueue_product_embedding("race", triggered_by=f"v{i}") for i in range(1, 50))
        )
        newest = await jobqueue.enqueue_product_embedding("race", triggered_by="v-newest")
        await redis_client.set(release_key("race"), 1)
        await worker.wait_for(lambda: _state(first, "completed"), timeout=20, what="the rerun to complete")
        await worker.wait_for(lambda: _runs_at_least(redis_client, 2), timeout=5, what="the second run")
    seen = [r["triggered_by"] for r in await runs(redis_client)]
    figures.report(
        SCENARIO, jobs=1, duplicates_unexplained=max(len(seen) - 2, 0), rerun_enqueues=50, product_runs=len(seen)
    )
    assert all(not h.created and h.rerun for h in [*racing, newest])
    assert seen == ["v0", "v-newest"]
    info = await jobqueue.product_embedding_queue.get_job(first.job_id)
    assert info.payload["triggered_by"] == "v-newest"


async def _runs_at_least(redis_client, n):
    return len(await runs(redis_client)) >= n


async def _state(handle, state):
    return await handle.status() == state


async def _true(value):
    return value
