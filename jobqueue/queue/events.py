"""Each queue's events: a bounded Redis stream (``jq:<queue>:events``) the scripts write in the same
atomic step as the transition each event reports, and ``Queue.events()`` that reads it.

Events and their ``data`` (besides the job id every event has):

- ``added``     a job was created (enqueue, retry, schedule, or a rerun placed): ``priority``, ``due`` (ms)
- ``rerun``     an enqueue found the job active: it runs once more after this run: ``priority``
- ``active``    a worker claimed it: ``attempt``
- ``progress``  the handler reported progress: ``attempt``, ``progress`` (a number or a JSON object)
- ``completed`` ``attempt``, ``result`` (JSON, when it is short) or ``result_truncated``
- ``retrying``  an attempt failed and will be retried: ``attempt``, ``error``, ``delay`` (ms)
- ``failed``    the job ended failed (never for an attempt that is retried): ``attempt``,
                ``error``, ``error_type``
- ``parked``    the run handed its work to something that finishes it elsewhere (a Batch API
                request): the job waits delayed, no attempt spent: ``attempt``, ``reason``, ``delay`` (ms)
- ``stalled``   a run's lease expired and the job was returned to the queue: ``attempt``
- ``removed``   a waiting, delayed or finished job was removed (``remove_job``), or a waiting or
                delayed one by ``clean``/``drain`` (finished records removed by retention or
                ``clean`` emit nothing: their outcome was an event already)
- ``cancelled`` ``cancel_job`` was accepted: ``reason``, ``running`` (True: its worker stops it; the
                job's end is a ``failed`` event either way)
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from jobqueue.backend._json import loads
from jobqueue.backend.connection import dedicated_client, redis_errors
from jobqueue.constants import EVENTS_BLOCK_S, EVENTS_READ_COUNT
from jobqueue.errors import InvalidJobError
from jobqueue.settings import get_settings

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from jobqueue.backend._keys import QueueKeys

EVENT_NAMES = (
    "added",
    "rerun",
    "active",
    "progress",
    "completed",
    "retrying",
    "failed",
    "stalled",
    "parked",
    "removed",
    "cancelled",
)
_INT_FIELDS = frozenset({"attempt", "priority", "due", "delay"})
_JSON_FIELDS = frozenset({"result", "progress"})
_FLAG_FIELDS = frozenset({"result_truncated", "running"})
_EVENT_ID = re.compile(r"^\d+(-\d+)?$")


@dataclass(frozen=True, slots=True)
class JobEvent:
    """One event of a queue: ``name`` (see ``jobqueue.queue.events``), the job it is about, its ``data``,
    its stream ``id`` (pass it as ``since`` to resume after it) and Redis' time of it."""

    name: str
    job_id: str
    data: dict[str, Any] = field(default_factory=dict)
    id: str = ""
    timestamp: dt.datetime | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form (the timestamp as ISO-8601)."""
        stamp = None if self.timestamp is None else self.timestamp.isoformat()
        return {"id": self.id, "timestamp": stamp, "name": self.name, "job_id": self.job_id, "data": self.data}


def parse_event(event_id: bytes | str, fields: dict[bytes, bytes]) -> JobEvent:
    """A ``JobEvent`` from one stream entry."""
    eid = event_id.decode() if isinstance(event_id, bytes) else event_id
    name, job_id = "", ""
    data: dict[str, Any] = {}
    for raw_key, raw_value in fields.items():
        key, value = raw_key.decode(), raw_value.decode(errors="replace")
        if key == "event":
            name = value
        elif key == "job":
            job_id = value
        elif key in _INT_FIELDS:
            data[key] = int(value) if value.lstrip("-").isdigit() else value
        elif key in _JSON_FIELDS:
            try:
                data[key] = loads(value)
            except ValueError:
                data[key] = value
        elif key in _FLAG_FIELDS:
            data[key] = value == "1"
        else:
            data[key] = value
    ms = int(eid.split("-")[0])
    return JobEvent(name, job_id, data, eid, dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC))


async def last_event_id(client: Redis, key: str) -> str:
    """The id of the stream's newest event, or ``0-0`` when it has none."""
    newest = await client.xrevrange(key, count=1)
    if not newest:
        return "0-0"
    eid = newest[0][0]
    return eid.decode() if isinstance(eid, bytes) else eid


def check_since(since: str) -> str:
    if not isinstance(since, str) or not (since == "$" or _EVENT_ID.match(since)):
        raise InvalidJobError(f"since must be '$' or an event id such as '1733270400000-0', got {since!r}")
    return since


def read_timeout_scale() -> float:
    """``redis_errors`` scale that lets one blocking read wait ``EVENTS_BLOCK_S`` and still answer."""
    timeout = get_settings().redis_timeout
    return (timeout + EVENTS_BLOCK_S) / timeout


class QueueEvents:
    """The events side of ``Queue``."""

    name: str
    keys: QueueKeys

    async def events(self, since: str = "$") -> AsyncIterator[JobEvent]:
        """Yield this queue's events as they happen, oldest first, waiting on Redis (XREAD BLOCK)
        on a connection of its own, never one of the shared pool.

        ``since="$"`` starts with the events written after the call; ``since=<event id>`` starts
        right *after* that event, so a reader that keeps the last id it saw resumes without loss
        (as long as the stream, bounded by ``JOBQUEUE_EVENTS_MAXLEN``, still holds it); ``"0"``
        reads everything kept. Redis errors raise ``RedisUnavailableError``/``RedisCommandError``.
        Close it when done (``async with contextlib.aclosing(queue.events()) as events:``).
        """
        cursor = check_since(since)
        key = self.keys.events
        client = dedicated_client(self.name)
        try:
            if cursor == "$":
                async with redis_errors(queue=self.name):
                    cursor = await last_event_id(client, key)
            scale = read_timeout_scale()
            while True:
                async with redis_errors(queue=self.name, scale=scale):
                    reply = await client.xread({key: cursor}, count=EVENTS_READ_COUNT, block=int(EVENTS_BLOCK_S * 1000))
                for _, entries in reply:
                    for event_id, fields in entries:
                        event = parse_event(event_id, fields)
                        cursor = event.id
                        yield event
        finally:
            await client.aclose()
