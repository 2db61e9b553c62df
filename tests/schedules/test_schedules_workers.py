"""Recurring schedules fired by real ``arq`` worker processes (several racing for each slot)."""

import pytest

import jobqueue
from jobqueue import get_schedules, remove_schedule, upsert_schedule
from jobqueue import product_embedding_queue as embeddings
from tests.support.waiting import WorkerProcess, wait_for
from tests.support.workers import runs

SETTINGS = "tests.support.workers.EmbeddingTestSettings"


async def workers_up(redis_client, n):
    return len(await redis_client.zrange(embeddings.keys.workers, 0, -1)) >= n


async def fired(schedule_id, n):
    found = [s for s in await get_schedules() if s.id == schedule_id]
    return found and found[0].fired >= n


async def idle():
    c = await embeddings.get_job_counts()
    return c["waiting"] == c["active"] == c["paused"] == 0


async def redis_ms(redis_client):
    seconds, micros = await redis_client.time()
    return seconds * 1000 + micros // 1000


def slot_of(job_id):
    return int(job_id.rsplit(":", 1)[1])


async def slot_runs(redis_client, schedule_id):
    """``{job id: runs}`` of the jobs the schedule enqueued (each records its run)."""
    prefix = f"product-embedding:schedule:{schedule_id}:"
    counted: dict[str, int] = {}
    for run in await runs(redis_client):
        if run["job_id"].startswith(prefix):
            counted[run["job_id"]] = counted.get(run["job_id"], 0) + 1
    return counted


async def test_three_worker_processes_fire_each_slot_of_a_one_second_schedule_exactly_once(redis_client):
    first, second, third = WorkerProcess(SETTINGS), WorkerProcess(SETTINGS), WorkerProcess(SETTINGS)
    replacement = WorkerProcess(SETTINGS)
    with first, second, third:
        try:
            await first.wait_for(lambda: workers_up(redis_client, 3), timeout=30, what="three workers")
            await upsert_schedule("tick", "product-embedding", every=1, limit=12, payload={"product_id": "tick"})
            await first.wait_for(lambda: fired("tick", 4), timeout=30, what="four slots to fire")
            # A restart on the way: one worker dies without warning, a new one takes its place.
            third.kill()
            replacement.start()
            await first.wait_for(lambda: finished("tick"), timeout=40, what="all twelve slots to fire")
            await first.wait_for(idle, timeout=20, what="the schedule's jobs to run")
        finally:
            replacement.stop()
    (schedule,) = await get_schedules()
    counted = await slot_runs(redis_client, "tick")
    slots = sorted(slot_of(job_id) for job_id in counted)
    assert schedule.fired == len(slots) == 12, "a slot was claimed twice or not at all"
    assert slots == list(range(slots[0], slots[0] + 12_000, 1000)), "a slot was skipped"
    completed = {j.decode() for j in await redis_client.zrange(embeddings.keys.completed, 0, -1)}
    assert set(counted) <= completed
    # Each job ran once; only a job the killed worker was running may have run again (at-least-once).
    killed = {r["job_id"] for r in await runs(redis_client) if r["pid"] == third.pid}
    assert all(n == 1 or (n == 2 and job_id in killed) for job_id, n in counted.items()), counted


async def finished(schedule_id):
    found = [s for s in await get_schedules() if s.id == schedule_id]
    return found and found[0].next_run is None


@pytest.mark.usefixtures("short_schedule_slots")
async def test_a_removed_schedule_stops_firing_while_others_go_on(redis_client):
    with WorkerProcess(SETTINGS) as worker:
        await worker.wait_for(lambda: workers_up(redis_client, 1), timeout=30, what="the worker")
        await upsert_schedule("doomed", "product-embedding", every=0.2, payload={"product_id": "doomed"})
        await upsert_schedule("control", "product-embedding", every=0.2, payload={"product_id": "control"})
        await worker.wait_for(lambda: fired("doomed", 2), timeout=20, what="the doomed schedule to fire")
        assert await remove_schedule("doomed")
        removed_at = await redis_ms(redis_client)
        # The schedules share their slots: once the control fired five slots past the removal,
        # the removed one would have fired them too.
        await worker.wait_for(
            lambda: fired_past("control", removed_at + 1000), timeout=20, what="five more control slots"
        )
        await remove_schedule("control")
        await worker.wait_for(idle, timeout=20, what="the jobs to run")
    doomed = [slot_of(j) for j in await slot_runs(redis_client, "doomed")]
    late_control = [s for s in map(slot_of, await slot_runs(redis_client, "control")) if s > removed_at]
    assert len(doomed) >= 2 and max(doomed) <= removed_at
    assert len(late_control) >= 5


async def fired_past(schedule_id, ms):
    found = [s for s in await get_schedules() if s.id == schedule_id]
    return found and found[0].last_run is not None and found[0].last_run.timestamp() * 1000 >= ms


@pytest.mark.usefixtures("short_schedule_slots")
async def test_a_paused_queue_accumulates_its_schedules_jobs_and_runs_them_on_resume(redis_client):
    with WorkerProcess(SETTINGS) as worker:
        await worker.wait_for(lambda: workers_up(redis_client, 1), timeout=30, what="the worker")
        await embeddings.pause()
        await upsert_schedule("held", "product-embedding", every=0.2, payload={"product_id": "held"})
        await worker.wait_for(lambda: fired("held", 4), timeout=20, what="four slots to fire while paused")
        await remove_schedule("held")
        held = (await embeddings.get_job_counts())["paused"]
        assert held >= 4
        assert await runs(redis_client) == []
        assert {j.job_id.rsplit(":", 1)[0] for j in await embeddings.get_jobs("paused")} == {
            "product-embedding:schedule:held"
        }
        await embeddings.resume()
        await wait_for(idle, timeout=20, what="the held jobs to run after resume")
    counted = await slot_runs(redis_client, "held")
    assert len(counted) == held and set(counted.values()) == {1}
    assert (await jobqueue.product_embedding_queue.get_job_counts())["completed"] == held
