"""Recurring schedules against the real Redis: upsert by id, validation, removal, firing passes.

The firing passes here are run in-process (``jobqueue.worker._scheduler.fire_due``, what every worker's
scheduler task runs); tests/schedules/test_schedules_workers.py runs them in real ``arq`` worker processes.
"""

import asyncio
import datetime as dt
import json
from zoneinfo import ZoneInfo

import pytest
import redis.asyncio as aioredis

import jobqueue
import jobqueue.schedules.schedules
from jobqueue import InvalidJobError, get_schedules, remove_schedule, upsert_schedule
from jobqueue import product_embedding_queue as embeddings
from jobqueue.backend._keys import SCHEDULE_KEYS
from jobqueue.worker._scheduler import fire_due, slot_job_id
from tests.support.waiting import wait_for

UTC = dt.UTC
PAYLOAD = {"product_id": "p1"}


async def redis_ms(redis) -> int:
    seconds, micros = await redis.time()
    return seconds * 1000 + micros // 1000


async def schedule_keys(redis) -> list[bytes]:
    return [k async for k in redis.scan_iter(match=SCHEDULE_KEYS.prefix + "*")]


async def slots_queued(redis, queue, schedule_id) -> list[int]:
    """The slots of the jobs ``schedule_id`` put in ``queue`` (none has run: no worker here)."""
    prefix = f"{queue.name}:schedule:{schedule_id}:"
    members = [m.decode() for m in await redis.zrange(queue.keys.queue, 0, -1)]
    return sorted(int(m[len(prefix) :]) for m in members if m.startswith(prefix))


async def one(schedule_id):
    (found,) = [s for s in await get_schedules() if s.id == schedule_id]
    return found


async def until_due(redis, schedule_id, *, behind_ms=0):
    """Wait (on Redis's clock) until the schedule's next slot is ``behind_ms`` in the past."""
    nxt = (await one(schedule_id)).next_run
    due = int(nxt.timestamp() * 1000) + behind_ms
    await wait_for(lambda: _past(redis, due), what=f"Redis time to pass {due}")


async def _past(redis, ms):
    return await redis_ms(redis) >= ms


async def drain_passes(redis, queue=embeddings):
    """Run scheduler passes until nothing is due (what a worker's task does back to back)."""
    for _ in range(1000):
        if await fire_due(queue, redis) > 0:
            return
    raise AssertionError("the scheduler kept finding due slots")


# -- upsert, get, remove --------------------------------------------------------------------------


async def test_upsert_stores_the_schedule_and_get_schedules_shows_it(redis_client):
    before = await redis_ms(redis_client)
    schedule = await upsert_schedule(
        "nightly-p1", "product-embedding", cron="0 3 * * *", tz="Europe/London", payload=PAYLOAD, priority=5
    )
    assert schedule.id == "nightly-p1"
    assert (schedule.queue, schedule.cron, schedule.every, schedule.tz) == (
        "product-embedding",
        "0 3 * * *",
        None,
        "Europe/London",
    )
    assert schedule.payload == PAYLOAD and schedule.priority == 5 and schedule.fired == 0
    assert schedule.pattern == "cron 0 3 * * *"
    local = schedule.next_run.astimezone(ZoneInfo("Europe/London"))
    assert (local.hour, local.minute) == (3, 0)
    assert before < schedule.next_run.timestamp() * 1000 <= before + 25 * 3600 * 1000
    assert await get_schedules() == [schedule]
    assert await get_schedules("product-embedding") == [schedule]
    assert await get_schedules(jobqueue.product_enrichment_queue) == []


async def test_cron_schedule_upserted_twice_exists_once_and_keeps_its_next_slot(redis_client):
    first = await upsert_schedule("daily", "product-embedding", cron="*/5 * * * *", payload=PAYLOAD)
    second = await upsert_schedule(
        "daily", "product-embedding", cron="*/5 * * * *", payload={"product_id": "p2"}, priority=9
    )
    schedules = await get_schedules()
    assert [s.id for s in schedules] == ["daily"]
    assert second.next_run == first.next_run
    assert (second.payload, second.priority) == ({"product_id": "p2"}, 9)
    assert await redis_client.scard(SCHEDULE_KEYS.ids) == 1
    assert await redis_client.zcard(SCHEDULE_KEYS.due("product-embedding")) == 1


async def test_an_upsert_that_changes_the_pattern_recomputes_the_next_slot(redis_client):
    every_year = await upsert_schedule("s", "product-embedding", cron="0 0 1 1 *", payload=PAYLOAD)
    every_minute = await upsert_schedule("s", "product-embedding", cron="* * * * *", payload=PAYLOAD)
    assert every_minute.next_run < every_year.next_run
    assert every_minute.next_run.second == 0
    assert every_minute.next_run - dt.datetime.now(UTC) <= dt.timedelta(seconds=61)
    score = await redis_client.zscore(SCHEDULE_KEYS.due("product-embedding"), "s")
    assert score == every_minute.next_run.timestamp() * 1000


async def test_an_upsert_can_move_a_schedule_to_another_queue(redis_client):
    await upsert_schedule("moving", "product-embedding", every=60, payload=PAYLOAD)
    moved = await upsert_schedule("moving", "product-enrichment", every=60, payload=PAYLOAD)
    assert moved.queue == "product-enrichment"
    assert await redis_client.zcard(SCHEDULE_KEYS.due("product-embedding")) == 0
    assert await redis_client.zscore(SCHEDULE_KEYS.due("product-enrichment"), "moving") is not None
    assert [s.id for s in await get_schedules("product-enrichment")] == ["moving"]


@pytest.mark.usefixtures("short_schedule_slots")
async def test_a_schedule_moved_to_another_queue_starts_afresh_there(redis_client):
    await upsert_schedule("stuck", "product-embedding", every=0.05, payload=PAYLOAD)
    await until_due(redis_client, "stuck", behind_ms=300)  # no worker fired it on its first queue
    before = await redis_ms(redis_client)
    moved = await upsert_schedule("stuck", "product-enrichment", every=0.05, payload=PAYLOAD)
    assert moved.next_run.timestamp() * 1000 > before


async def test_every_slots_are_aligned_to_the_interval_or_to_start(redis_client):
    aligned = await upsert_schedule("aligned", "product-embedding", every=3600, payload=PAYLOAD)
    assert aligned.next_run.timestamp() % 3600 == 0
    start = dt.datetime.now(UTC).replace(microsecond=0) + dt.timedelta(days=1, seconds=7)
    anchored = await upsert_schedule(
        "anchored", "product-embedding", every=dt.timedelta(hours=1), start=start, payload=PAYLOAD
    )
    assert anchored.next_run == start
    assert anchored.every == 3600.0 and anchored.pattern == "every 3600s"


async def test_remove_schedule_deletes_it_and_reports_whether_it_existed(redis_client):
    await upsert_schedule("gone", "product-embedding", every=10, payload=PAYLOAD)
    assert await remove_schedule("gone") is True
    assert await remove_schedule("gone") is False
    assert await get_schedules() == []
    assert await schedule_keys(redis_client) == []


async def test_a_schedule_stored_under_an_id_now_refused_can_still_be_removed(redis_client, monkeypatch):
    with monkeypatch.context() as m:  # as upsert_schedule stored it before ids were checked as job ids
        m.setattr(jobqueue.schedules.schedules, "_schedule_id", lambda value: value)
        await upsert_schedule("nightly*", "product-embedding", every=60, payload=PAYLOAD)
    assert await remove_schedule("nightly*") is True
    assert await schedule_keys(redis_client) == []
    with pytest.raises(InvalidJobError, match="schedule_id"):
        await remove_schedule("")


async def test_an_end_already_past_stores_a_finished_schedule(redis_client):
    end = dt.datetime.now(UTC) - dt.timedelta(hours=1)
    schedule = await upsert_schedule(
        "over", "product-embedding", every=60, end=end, payload=PAYLOAD, start=end - dt.timedelta(days=1)
    )
    assert schedule.next_run is None
    assert await redis_client.zcard(SCHEDULE_KEYS.due("product-embedding")) == 0


BAD = [
    ({"schedule_id": ""}, "schedule_id"),
    ({"schedule_id": "has space"}, "schedule_id"),
    ({"schedule_id": "nightly*"}, "schedule_id"),
    ({"schedule_id": "p[12]"}, "schedule_id"),
    ({"schedule_id": "bell\x07"}, "schedule_id"),
    ({"schedule_id": "x" * 201}, "schedule_id"),
    ({"schedule_id": 5}, "schedule_id"),
    ({"queue": "no-such-queue"}, "unknown queue"),
    ({"cron": None}, "exactly one of"),
    ({"every": 5}, "exactly one of"),
    ({"cron": "61 * * * *"}, "invalid cron expression"),
    ({"cron": "* * *"}, "invalid cron expression"),
    ({"cron": 5}, "cron must be"),
    ({"tz": "Mars/Olympus"}, "IANA time zone"),
    ({"tz": "../../etc/passwd"}, "IANA time zone"),
    ({"payload": {"product_id": ""}}, "invalid product-embedding job"),
    ({"payload": {"taste_profile_id": "t"}}, "invalid product-embedding job"),
    ({"priority": 11}, "priority"),
    ({"limit": 0}, "limit"),
    ({"limit": True}, "limit"),
    ({"start": "2030-01-01T00:00:00"}, "timezone"),
    ({"start": "2030-01-02T00:00:00+00:00", "end": "2030-01-01T00:00:00+00:00"}, "start must be before end"),
]


@pytest.mark.parametrize(("change", "message"), BAD, ids=[m + ":" + repr(c) for c, m in BAD])
async def test_invalid_arguments_raise_and_write_nothing(redis_client, change, message):
    args = {"schedule_id": "s", "queue": "product-embedding", "cron": "0 3 * * *", "payload": PAYLOAD} | change
    schedule_id, queue = args.pop("schedule_id"), args.pop("queue")
    with pytest.raises(InvalidJobError, match=message):
        await upsert_schedule(schedule_id, queue, **args)
    assert await schedule_keys(redis_client) == []


@pytest.mark.parametrize("every", [0, -1, 0.0001, float("nan"), "5"])
async def test_an_invalid_every_raises_and_writes_nothing(redis_client, every):
    with pytest.raises(InvalidJobError, match="every"):
        await upsert_schedule("s", "product-embedding", every=every, payload=PAYLOAD)
    assert await schedule_keys(redis_client) == []


@pytest.mark.parametrize("every", [0.001, 0.5, dt.timedelta(milliseconds=999)])
async def test_every_below_the_minimum_raises_naming_it_and_writes_nothing(redis_client, every):
    with pytest.raises(InvalidJobError, match=r"every must be at least 1s"):
        await upsert_schedule("s", "product-embedding", every=every, payload=PAYLOAD)
    assert await schedule_keys(redis_client) == []
    assert (await upsert_schedule("s", "product-embedding", every=1, payload=PAYLOAD)).every == 1.0


async def test_redis_down_is_a_clear_error(monkeypatch):
    from jobqueue import RedisUnavailableError
    from jobqueue.settings import get_settings
    from tests.support.waiting import free_port

    port = free_port()
    monkeypatch.setenv("REDIS_URL", f"redis://:secret@127.0.0.1:{port}/0")
    monkeypatch.setenv("JOBQUEUE_REDIS_TIMEOUT", "1")
    get_settings.cache_clear()
    await jobqueue.close_queues()
    with pytest.raises(RedisUnavailableError, match=f"redis://\\*\\*\\*@127.0.0.1:{port}/0") as caught:
        await get_schedules()
    assert "secret" not in str(caught.value)


# -- firing passes ------------------------------------------------------------------------------


@pytest.mark.usefixtures("short_schedule_slots")
async def test_racing_passes_fire_a_due_slot_exactly_once(redis_client, redis_url):
    schedule = await upsert_schedule("race", "product-embedding", every=0.05, payload=PAYLOAD)
    await until_due(redis_client, "race")
    clients = [aioredis.Redis.from_url(redis_url) for _ in range(6)]
    try:
        await asyncio.gather(*(fire_due(embeddings, c) for c in clients))
    finally:
        for c in clients:
            await c.aclose()
    slots = await slots_queued(redis_client, embeddings, "race")
    assert slots[0] == int(schedule.next_run.timestamp() * 1000)
    assert len(slots) == len(set(slots))
    assert (await one("race")).fired == len(slots)
    job = await embeddings.get_job(slot_job_id(embeddings, "race", slots[0]))
    assert job.state == "waiting" and job.payload == PAYLOAD
    assert job.priority == embeddings.default_priority


@pytest.mark.usefixtures("short_schedule_slots")
async def test_slots_missed_while_no_scheduler_ran_fire_once(redis_client):
    await upsert_schedule("outage", "product-embedding", every=0.05, payload=PAYLOAD)
    missed_from = int((await one("outage")).next_run.timestamp() * 1000)
    await until_due(redis_client, "outage", behind_ms=500)  # ten slots go by with no worker
    before = await redis_ms(redis_client)
    await drain_passes(redis_client)
    assert await slots_queued(redis_client, embeddings, "outage") == [missed_from]
    after = await one("outage")
    assert after.fired == 1 and after.last_run.timestamp() * 1000 == missed_from
    assert after.next_run.timestamp() * 1000 > before


@pytest.mark.usefixtures("short_schedule_slots")
async def test_a_tended_queue_that_falls_behind_fires_every_slot(redis_client):
    await upsert_schedule("behind", "product-embedding", every=0.05, payload=PAYLOAD)
    await drain_passes(redis_client)  # a scheduler ran: the queue's schedules are tended
    first = int((await one("behind")).next_run.timestamp() * 1000)
    await until_due(redis_client, "behind", behind_ms=300)
    await drain_passes(redis_client)
    slots = await slots_queued(redis_client, embeddings, "behind")
    assert len(slots) >= 7
    assert slots == list(range(first, first + 50 * len(slots), 50))


@pytest.mark.usefixtures("short_schedule_slots")
async def test_limit_counts_fires_and_then_the_schedule_is_finished(redis_client):
    await upsert_schedule("thrice", "product-embedding", every=0.02, payload=PAYLOAD, limit=3)
    await drain_passes(redis_client)
    for _ in range(3):
        if (await one("thrice")).next_run is not None:
            await until_due(redis_client, "thrice")
            await drain_passes(redis_client)
    done = await one("thrice")
    assert (done.fired, done.next_run) == (3, None)
    assert len(await slots_queued(redis_client, embeddings, "thrice")) == 3
    assert await redis_client.zcard(SCHEDULE_KEYS.due("product-embedding")) == 0
    again = await upsert_schedule("thrice", "product-embedding", every=0.02, payload=PAYLOAD, limit=3)
    assert again.next_run is None, "an unchanged upsert does not restart a finished schedule"


@pytest.mark.usefixtures("short_schedule_slots")
async def test_a_removed_schedule_is_not_fired(redis_client):
    await upsert_schedule("removed", "product-embedding", every=0.02, payload=PAYLOAD)
    await until_due(redis_client, "removed")
    await remove_schedule("removed")
    await drain_passes(redis_client)
    assert await slots_queued(redis_client, embeddings, "removed") == []
    assert await schedule_keys(redis_client) == [SCHEDULE_KEYS.alive("product-embedding").encode()]


@pytest.mark.usefixtures("short_schedule_slots")
async def test_a_payload_the_queue_no_longer_accepts_skips_the_slot_with_an_error(redis_client):
    await upsert_schedule("stale", "product-embedding", every=0.02, payload=PAYLOAD)
    # As after a deploy whose payload model rejects what was stored.
    key = SCHEDULE_KEYS.schedule("stale")
    spec = json.loads(await redis_client.hget(key, "spec"))
    spec["payload"] = {"product_id": "p1", "unknown_field": 1}
    await redis_client.hset(key, "spec", json.dumps(spec))
    await until_due(redis_client, "stale")
    await fire_due(embeddings, redis_client)
    stale = await one("stale")
    assert stale.fired == 0 and "unknown_field" in stale.error
    assert stale.next_run is not None
    assert await slots_queued(redis_client, embeddings, "stale") == []


@pytest.mark.usefixtures("short_schedule_slots")
async def test_an_unreadable_schedule_is_skipped_without_stopping_the_others(redis_client):
    await upsert_schedule("broken", "product-embedding", every=0.02, payload=PAYLOAD)
    await upsert_schedule("fine", "product-embedding", every=0.02, payload={"product_id": "p2"})
    due = max(int(s.next_run.timestamp() * 1000) for s in await get_schedules())
    await redis_client.hset(SCHEDULE_KEYS.schedule("broken"), "spec", "not json")
    await wait_for(lambda: _past(redis_client, due), what="both schedules to be due")
    wait = await fire_due(embeddings, redis_client)
    assert wait > 0, "a pass must not return at once for a schedule it cannot read"
    assert len(await slots_queued(redis_client, embeddings, "fine")) == 1
    assert await slots_queued(redis_client, embeddings, "broken") == []
    assert [s.id for s in await get_schedules()] == ["fine"]  # listed without the unreadable one
