"""``JobHandle.result()`` waits on the queue's events stream instead of polling.

One listener per queue and event loop reads the stream (XREAD BLOCK on a connection of its own)
while some ``result()`` call of that queue waits, and wakes the callers whose job completed, failed
or was removed; each caller then reads the job's record as before. The listener starts at the
stream's newest event before the caller's first look at the job, so an outcome recorded after that
look is always seen. It stops when its last caller leaves. Callers still look at the job every
``RESULT_RECHECK_S``: an event missed (the stream turned off or trimmed, Redis away for a moment)
costs at most that long.
"""

from __future__ import annotations

import asyncio
import logging

from redis.exceptions import RedisError

from jobqueue._tasks import cancel_and_wait
from jobqueue.backend import _redis_errors
from jobqueue.backend.connection import dedicated_client
from jobqueue.constants import EVENTS_BLOCK_S, EVENTS_READ_COUNT
from jobqueue.queue.events import last_event_id
from jobqueue.settings import get_settings

logger = logging.getLogger("jobqueue")

# The events after which a waiting result() looks at its job again.
WAKING_EVENTS = frozenset({b"completed", b"failed", b"removed"})
# After a Redis error, the listener tries again after this long (callers look at their job meanwhile).
_RETRY_S = 0.5


class ResultListener:
    """Reads one queue's events for the ``result()`` calls waiting on it."""

    def __init__(self, queue: str, key: str) -> None:
        self.queue = queue
        self.key = key
        self.loop = asyncio.get_running_loop()
        self.waiters: dict[str, set[asyncio.Event]] = {}
        self.ready = asyncio.Event()  # the cursor is set: an outcome recorded from now on is seen
        self.closed = False
        self.task = asyncio.create_task(self._run(), name=f"jobqueue-results-{key}")

    def add(self, job_id: str) -> asyncio.Event:
        event = asyncio.Event()
        self.waiters.setdefault(job_id, set()).add(event)
        return event

    def discard(self, job_id: str, event: asyncio.Event) -> bool:
        """Forget one caller; True when it was the last (the listener is then closed)."""
        events = self.waiters.get(job_id)
        if events is not None:
            events.discard(event)
            if not events:
                del self.waiters[job_id]
        if not self.waiters:
            self.closed = True
        return self.closed

    async def _run(self) -> None:
        client = dedicated_client(self.queue)
        timeout = get_settings().redis_timeout
        cursor: str | None = None
        try:
            while True:
                try:
                    if cursor is None:
                        async with asyncio.timeout(timeout):
                            cursor = await last_event_id(client, self.key)
                        self.ready.set()
                    async with asyncio.timeout(timeout + EVENTS_BLOCK_S):
                        reply = await client.xread(
                            {self.key: cursor}, count=EVENTS_READ_COUNT, block=int(EVENTS_BLOCK_S * 1000)
                        )
                except (RedisError, *_redis_errors.TRANSIENT) as exc:
                    logger.debug("waiting for results on %s: reading events failed: %s", self.key, exc)
                    self.ready.set()  # callers look at their jobs by themselves meanwhile
                    await asyncio.sleep(_RETRY_S)
                    continue
                for _, entries in reply:
                    for event_id, fields in entries:
                        cursor = event_id.decode()
                        if fields.get(b"event") in WAKING_EVENTS:
                            for event in self.waiters.get(fields.get(b"job", b"").decode(), ()):
                                event.set()
        finally:
            await client.aclose()


_listeners: dict[str, ResultListener] = {}


def listen(queue: str, key: str, job_id: str) -> tuple[ResultListener, asyncio.Event]:
    """Join the listener of ``key``, ``queue``'s events stream (made if need be), as a caller
    waiting for ``job_id``."""
    listener = _listeners.get(key)
    if listener is None or listener.closed or listener.loop is not asyncio.get_running_loop():
        listener = _listeners[key] = ResultListener(queue, key)
    return listener, listener.add(job_id)


async def leave(listener: ResultListener, job_id: str, event: asyncio.Event) -> None:
    if listener.discard(job_id, event):
        if _listeners.get(listener.key) is listener:
            del _listeners[listener.key]
        await cancel_and_wait(listener.task)


async def wait_woken(event: asyncio.Event, seconds: float) -> None:
    """Wait until ``event`` is set or ``seconds`` pass.

    ``asyncio.wait`` rather than ``asyncio.timeout``: on Python 3.11 a timeout that expires as the
    caller is cancelled can absorb the cancellation, and a cancelled ``result()`` would wait on.
    """
    if event.is_set() or seconds <= 0:
        return
    waiter = asyncio.ensure_future(event.wait())
    try:
        await asyncio.wait({waiter}, timeout=seconds)
    finally:
        waiter.cancel()
