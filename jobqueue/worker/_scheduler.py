"""The task each worker runs beside its jobs: fire the due slots of its queue's schedules.

Every worker of a queue runs one; they need no leader. A pass reads Redis's clock (``TIME``, so
hosts with skewed clocks agree) and the queue's due zset, and for each due schedule asks
``schedule_fire.lua`` to claim the slot and enqueue its job in one step: the claim holds only when
the schedule's next slot is still the one read, so each slot is enqueued once however many workers
try it, and a worker that dies mid-pass leaves either the slot fired or the slot still due.

Missed slots: while some scheduler of the queue ran within ``SCHEDULER_ALIVE_S`` (the queue is
*tended*), a late pass fires every slot it fell behind on, one by one. After a time when none ran
(every worker down), the first pass fires the oldest missed slot once and moves on to the first
slot after now: an outage costs one catch-up job, not one per missed slot.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from redis.exceptions import RedisError

from jobqueue._tasks import cancel_and_wait
from jobqueue.backend import _redis_errors, _scripts
from jobqueue.backend._keys import SCHEDULE_KEYS
from jobqueue.constants import SCHEDULER_ALIVE_RENEW_S, SCHEDULER_ALIVE_S, SCHEDULER_BATCH, SCHEDULER_MAX_WAIT_S
from jobqueue.errors import InvalidJobError
from jobqueue.queue.queue import Queue
from jobqueue.schedules.schedules import from_hash

logger = logging.getLogger("jobqueue.schedules")

SCHEDULER_KEY = "jobqueue_scheduler"  # where the worker keeps the task, in arq's ctx


def slot_job_id(queue: Queue, schedule_id: str, slot_ms: int) -> str:
    """The job id of one slot: unique per slot (so a paused queue holds one job per slot rather
    than one merged job), and prefixed by the queue's name like every job id of that queue."""
    return f"{queue.name}:schedule:{schedule_id}:{slot_ms}"


def _ms(time_reply: tuple[int, int]) -> int:
    seconds, micros = time_reply
    return int(seconds) * 1000 + int(micros) // 1000


async def fire_due(queue: Queue, redis: Any, *, mark_tended: bool = True) -> float:
    """One pass: fire ``queue``'s due slots; returns the seconds until the next slot is due
    (0 when some are still due, at most ``SCHEDULER_MAX_WAIT_S``). ``mark_tended`` renews the
    queue's tended mark (``run_scheduler`` does every ``SCHEDULER_ALIVE_RENEW_S``)."""
    keys = SCHEDULE_KEYS
    pipe = redis.pipeline(transaction=False)
    pipe.time()
    pipe.exists(keys.alive(queue.name))
    pipe.zrange(keys.due(queue.name), 0, SCHEDULER_BATCH - 1, withscores=True)
    time_reply, tended, entries = await pipe.execute()
    now = _ms(time_reply)
    unreadable = False
    for raw_id, score in entries:
        if score > now:
            break
        unreadable |= not await _fire(queue, redis, raw_id.decode(), now, bool(tended))

    pipe = redis.pipeline(transaction=False)
    if mark_tended:
        pipe.set(keys.alive(queue.name), b"1", px=int(SCHEDULER_ALIVE_S * 1000))
    pipe.time()
    pipe.zrange(keys.due(queue.name), 0, 0, withscores=True)
    *_, time_reply, first = await pipe.execute()
    if not first or unreadable:  # an unreadable schedule stays due: do not spin on it
        return SCHEDULER_MAX_WAIT_S
    return min(max((first[0][1] - _ms(time_reply)) / 1000, 0.0), SCHEDULER_MAX_WAIT_S)


async def _fire(queue: Queue, redis: Any, schedule_id: str, now: int, tended: bool) -> bool:
    """Fire one due schedule's slot; False when its hash cannot be read (it is logged)."""
    keys = SCHEDULE_KEYS
    script_keys = [keys.schedule(schedule_id), keys.due(queue.name)]
    raw = await redis.hgetall(keys.schedule(schedule_id))
    if b"next" not in raw:
        # Removed or finished since the zset was read: the script drops a stale zset entry.
        await _scripts.SCHEDULE_FIRE(redis, script_keys, [schedule_id, "", "", -1, queue.keys.base, "", "", 0, ""])
        return True
    try:
        schedule = from_hash(raw)
        rev, slot_text = raw[b"rev"].decode(), raw[b"next"].decode()
        slot = int(slot_text)
    except (KeyError, ValueError) as exc:  # written by hand, not by upsert_schedule
        logger.error("%s: schedule %s cannot be read, remove or upsert it: %r", queue.name, schedule_id, exc)
        return False
    if slot > now or schedule.queue != queue.name:  # not due yet, or moved to another queue
        return True
    following = schedule.rule.next_after(slot if tended else max(slot, now))
    job_id = slot_job_id(queue, schedule_id, slot)
    try:
        job = queue.prepare(schedule.payload, priority=schedule.priority)
        job_args = [job_id, job.job_head, job.priority, ""]
    except InvalidJobError as exc:  # the payload model changed since the upsert
        logger.error("%s: schedule %s skipped slot %d: %s", queue.name, schedule_id, slot, exc)
        job_args = ["", "", 0, str(exc)]
    claimed, created = await _scripts.SCHEDULE_FIRE(
        redis,
        script_keys,
        [schedule_id, rev, slot_text, -1 if following is None else following, queue.keys.base, *job_args],
    )
    if claimed and created >= 0:
        logger.info("%s: schedule %s fired slot %d as job %s", queue.name, schedule_id, slot, job_id)
    return True


async def run_scheduler(queue: Queue, redis: Any) -> None:
    """Fire ``queue``'s schedules until cancelled; Redis errors are logged and retried."""
    loop = asyncio.get_running_loop()
    marked = -SCHEDULER_ALIVE_RENEW_S  # loop time the tended mark was last renewed
    while True:
        try:
            renew = loop.time() - marked >= SCHEDULER_ALIVE_RENEW_S
            wait = await fire_due(queue, redis, mark_tended=renew)
            if renew:
                marked = loop.time()
        except (RedisError, *_redis_errors.TRANSIENT) as exc:
            wait = SCHEDULER_MAX_WAIT_S
            logger.warning("%s: scheduler pass failed, will retry: %s", queue.name, _redis_errors.describe(exc))
        await asyncio.sleep(wait)


def start_scheduler(queue: Queue, redis: Any) -> asyncio.Task[None]:
    """Start ``run_scheduler`` as a task of the running worker (from its ``on_startup``)."""
    return asyncio.create_task(run_scheduler(queue, redis), name=f"jobqueue-schedules-{queue.name}")


async def stop_scheduler(task: asyncio.Task[None] | None) -> None:
    """Cancel the task and wait for it (a claim in flight either ran in Redis or did not)."""
    await cancel_and_wait(task)
