"""Recurring schedules (BullMQ's job schedulers): a queue's job enqueued on a cron pattern or every
N seconds, defined at run time and stored in Redis.

``upsert_schedule`` creates or replaces a schedule by id (calling it at every start of a service
changes nothing); every worker of the schedule's queue fires it (``jobqueue.worker._scheduler``), and each
slot is enqueued exactly once across all of them. Slots are computed by ``jobqueue.schedules._slots``: cron
patterns in the schedule's time zone (DST as cron has it), ``every`` in absolute time.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from dataclasses import dataclass
from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict

from jobqueue import _validate
from jobqueue.backend import _scripts
from jobqueue.backend._keys import SCHEDULE_KEYS
from jobqueue.backend.connection import get_redis, redis_errors
from jobqueue.coreapi.queues import get_queue
from jobqueue.errors import InvalidJobError
from jobqueue.queue.queue import Queue
from jobqueue.schedules._slots import SlotRule, rule_from, to_datetime, to_ms
from jobqueue.settings import get_settings

logger = logging.getLogger("jobqueue.schedules")


class Schedule(BaseModel):
    """A recurring schedule as stored: its definition and how far it has fired.

    ``every`` is in seconds; ``next_run`` is None once the schedule is finished (past ``end``, or
    ``limit`` fires made); ``error`` says why the last slot could not be enqueued, if it could not.
    """

    model_config = ConfigDict(frozen=True)

    id: str
    queue: str
    cron: str | None = None
    every: float | None = None
    tz: str = "UTC"
    payload: dict[str, Any]
    priority: int | None = None
    start: AwareDatetime | None = None
    end: AwareDatetime | None = None
    limit: int | None = None
    next_run: AwareDatetime | None = None
    last_run: AwareDatetime | None = None
    fired: int = 0
    created_at: AwareDatetime | None = None
    updated_at: AwareDatetime | None = None
    error: str | None = None

    @property
    def pattern(self) -> str:
        """``cron <expression>`` or ``every <seconds>s``."""
        return f"cron {self.cron}" if self.cron is not None else f"every {self.every:g}s"

    @property
    def rule(self) -> SlotRule:
        """The definition's slot rule, in Unix milliseconds."""
        return SlotRule(
            cron=self.cron,
            every_ms=None if self.every is None else round(self.every * 1000),
            tz=self.tz,
            start_ms=to_ms(self.start),
            end_ms=to_ms(self.end),
        )

    def next_slot(self, after: dt.datetime) -> dt.datetime | None:
        """The first slot of this schedule later than ``after`` (an aware datetime), in UTC."""
        slot = self.rule.next_after(to_ms(_validate.aware_datetime(after, "after")) or 0)
        return to_datetime(slot)


# -- validation (everything is checked before Redis is written) ---------------------------------


def _schedule_id(value: Any) -> str:
    # The rule of job ids: a schedule's id is part of its jobs' ids and of Redis keys.
    return _validate.identifier(value, "schedule_id")


def _limit(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidJobError(f"limit must be a positive integer (the number of fires), got {value!r}")
    return value


@dataclass(frozen=True, slots=True)
class _Definition:
    schedule_id: str
    queue: Queue
    rule: SlotRule
    payload: dict[str, Any]
    priority: int | None
    limit: int | None

    def spec_json(self) -> str:
        r = self.rule
        return json.dumps(
            {
                "id": self.schedule_id,
                "queue": self.queue.name,
                "cron": r.cron,
                "every_ms": r.every_ms,
                "tz": r.tz,
                "start_ms": r.start_ms,
                "end_ms": r.end_ms,
                "payload": self.payload,
                "priority": self.priority,
                "limit": self.limit,
            },
            separators=(",", ":"),
        )


def _define(
    schedule_id: Any,
    queue: Any,
    *,
    cron: Any,
    every: Any,
    tz: Any,
    payload: Any,
    priority: Any,
    start: Any,
    end: Any,
    limit: Any,
) -> _Definition:
    sid = _schedule_id(schedule_id)
    q = get_queue(queue)
    rule = rule_from(cron=cron, every=every, tz=tz, start=start, end=end)
    model = _validate.payload(q.payload_model, payload, q.name)
    q.prepare(model, priority=priority)  # the queue's own checks of payload and priority
    return _Definition(sid, q, rule, model.model_dump(mode="json", exclude_none=True), priority, _limit(limit))


# -- the public calls -------------------------------------------------------------------------


async def upsert_schedule(
    schedule_id: str,
    queue: str | Queue,
    *,
    cron: str | None = None,
    every: float | dt.timedelta | None = None,
    tz: str = "UTC",
    payload: Any,
    priority: int | None = None,
    start: dt.datetime | str | None = None,
    end: dt.datetime | str | None = None,
    limit: int | None = None,
) -> Schedule:
    """Create or replace the schedule ``schedule_id``: ``queue`` gets a job with ``payload`` at
    every slot of ``cron`` (evaluated in the IANA zone ``tz``) or ``every`` seconds.

    Slots fall from ``start`` (default: now) to ``end`` (default: forever), ``limit`` fires at most.
    Upserting an unchanged pattern keeps the next slot and the fire count; a changed cron, every, tz
    or start recomputes the next slot from now. Raises ``InvalidJobError`` before anything is
    written when an argument is invalid (the payload is checked against the queue's payload model).
    """
    definition = _define(
        schedule_id,
        queue,
        cron=cron,
        every=every,
        tz=tz,
        payload=payload,
        priority=priority,
        start=start,
        end=end,
        limit=limit,
    )
    rule, keys, name = definition.rule, SCHEDULE_KEYS, definition.queue.name
    async with redis_errors(queue=name):
        redis = get_redis(name)
        seconds, micros = await redis.time()
        first = rule.next_after(seconds * 1000 + micros // 1000)
        if first is None and rule.end_ms is None:
            raise InvalidJobError(f"cron expression {rule.cron!r} never matches")
        await _scripts.SCHEDULE_UPSERT(
            redis,
            [keys.schedule(definition.schedule_id), keys.ids, keys.due(name)],
            [
                definition.schedule_id,
                name,
                rule.pattern(name),
                definition.spec_json(),
                -1 if first is None else first,
                definition.limit or 0,
                rule.end_ms or 0,
                keys.due(""),
            ],
        )
        stored = from_hash(await redis.hgetall(keys.schedule(definition.schedule_id)))
    # A schedule lives with its queue: moved to a queue on another Redis, it leaves the old one.
    await _remove_from(definition.schedule_id, [url for url in _servers() if url != _server_of(name)])
    return stored


def _servers() -> dict[str, str]:
    """Each Redis the queues use → a queue on it (whose client and error messages reach it)."""
    return {url: queues[0] for url, queues in get_settings().redis_servers().items()}


def _server_of(queue: str) -> str:
    return get_settings().queue_redis_url(queue)


async def _remove_from(schedule_id: str, urls: list[str]) -> bool:
    keys, servers, removed = SCHEDULE_KEYS, _servers(), False
    for url in urls:
        queue = servers[url]
        async with redis_errors(queue=queue):
            removed |= bool(
                await _scripts.SCHEDULE_REMOVE(
                    get_redis(queue), [keys.schedule(schedule_id), keys.ids], [schedule_id, keys.due("")]
                )
            )
    return removed


async def get_schedules(queue: str | Queue | None = None) -> list[Schedule]:
    """Every schedule (of ``queue`` when given), soonest next run first, finished ones last.

    Schedules live on their queue's Redis: each Redis the queues use is read.
    """
    name = None if queue is None else get_queue(queue).name
    servers = _servers() if name is None else {_server_of(name): name}
    found: list[Schedule] = []
    for on_server in servers.values():
        async with redis_errors(queue=on_server):
            redis = get_redis(on_server)
            ids = sorted(i.decode() for i in await redis.smembers(SCHEDULE_KEYS.ids))
            found += [s for s in await _load(redis, ids) if s is not None and (name is None or s.queue == name)]
    far = dt.datetime.max.replace(tzinfo=dt.UTC)
    return sorted(found, key=lambda s: (s.next_run or far, s.id))


async def remove_schedule(schedule_id: str) -> bool:
    """Remove a schedule; True when it existed. Jobs it already enqueued are left to run."""
    # Not upsert's rule: a schedule stored before ids were checked as job ids must stay removable.
    if not isinstance(schedule_id, str) or not schedule_id:
        raise InvalidJobError(f"schedule_id must be a non-empty string, got {schedule_id!r}")
    return await _remove_from(schedule_id, list(_servers()))


async def _load(redis: Any, ids: list[str]) -> list[Schedule | None]:
    if not ids:
        return []
    pipe = redis.pipeline(transaction=False)
    for sid in ids:
        pipe.hgetall(SCHEDULE_KEYS.schedule(sid))
    found: list[Schedule | None] = []
    for sid, raw in zip(ids, await pipe.execute(), strict=True):
        try:
            found.append(from_hash(raw) if raw else None)
        except (KeyError, ValueError) as exc:  # written by hand, not by upsert_schedule
            logger.warning("schedule %s cannot be read, remove or upsert it: %r", sid, exc)
            found.append(None)
    return found


def from_hash(raw: dict[bytes, bytes]) -> Schedule:
    """A ``Schedule`` from its Redis hash."""
    fields = {k.decode(): v.decode() for k, v in raw.items()}
    spec = json.loads(fields["spec"])

    def when(name: str) -> dt.datetime | None:
        value = fields.get(name)
        return to_datetime(int(value)) if value else None

    return Schedule(
        id=spec["id"],
        queue=spec["queue"],
        cron=spec["cron"],
        every=None if spec["every_ms"] is None else spec["every_ms"] / 1000,
        tz=spec["tz"],
        payload=spec["payload"],
        priority=spec["priority"],
        start=to_datetime(spec["start_ms"]),
        end=to_datetime(spec["end_ms"]),
        limit=spec["limit"],
        next_run=when("next"),
        last_run=when("last"),
        fired=int(fields.get("fired", "0")),
        created_at=when("created"),
        updated_at=when("updated"),
        error=fields.get("error"),
    )
