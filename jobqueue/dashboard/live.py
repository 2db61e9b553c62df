"""Live updates for the page: the queues' events as Server-Sent Events (``GET /api/events``), and
one job's timeline read from its queue's events stream (``GET /api/jobs/<id>/events``).

Why a stream rather than a poll of a cursor: the page already polls every view every few seconds;
what it lacked was the moment a job moves, and progress that moves smoothly. An ``EventSource``
gets both with one request, reconnects by itself and resumes from ``Last-Event-ID`` without loss,
and the browser does that work, not the page's script. The cost is one Redis connection per open
page (a dedicated one: XREAD BLOCK must never hold a connection of the shared pool), so streams are
bounded three ways: at most ``max_streams`` per dashboard process (more get 503 and the page keeps
polling), each ends after ``STREAM_LIFETIME_S`` (the browser reconnects where it left off, and a
server shutting down waits at most that long, or not at all when run by ``serve`` as
``jobqueue dashboard`` runs it), and a client that leaves is noticed at once (the
server's disconnect message) or at the next heartbeat, every ``EVENTS_BLOCK_S``; its connection is
closed then.

Each message's data is a JSON list of events (``JobEvent.to_dict()`` plus ``queue``), all that one
XREAD returned for the chosen queues (``queue=``) and job (``job=``); its ``id`` is the cursor
``<queue>:<event id>,...`` the stream resumes after. With ``compact=1`` (what the page asks for but
in a job's view) a busy queue costs the browser little: at most one message per ``COMPACT_GAP_S``,
holding each job's last progress and each queue's last other event, and a reader that falls a full
read behind skips to the newest event (the page then re-reads the view, which has the rest).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections.abc import Iterable
from itertools import count
from typing import Any

import anyio
from redis.asyncio import Redis
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.types import Receive, Scope, Send

from jobqueue._overview import queue_for_job
from jobqueue.backend.connection import dedicated_client, get_redis, redis_errors
from jobqueue.constants import EVENTS_BLOCK_S, EVENTS_READ_COUNT
from jobqueue.coreapi.queues import QUEUES, get_queue
from jobqueue.errors import InvalidJobError, JobNotFoundError, RedisCommandError, RedisUnavailableError
from jobqueue.queue.events import JobEvent, check_since, last_event_id, parse_event, read_timeout_scale
from jobqueue.queue.queue import Queue

logger = logging.getLogger("jobqueue.dashboard")

MAX_STREAMS = 32
STREAM_LIFETIME_S = 25.0
RECONNECT_MS = 1000
COMPACT_GAP_S = 0.25
# Each stream's connection is named so, with the process id and a counter (CLIENT LIST shows them).
CLIENT_NAME = "jobqueue-dashboard-live"
# A timeline reads its queue's stream in pages of this many events, at most TIMELINE_SCAN_MAX.
TIMELINE_PAGE = 1000
TIMELINE_SCAN_MAX = 50_000
_names = count(1)


class LiveStreams:
    """The open event streams of one dashboard app: at most ``limit`` at once."""

    def __init__(self, limit: int = MAX_STREAMS, lifetime: float | None = None) -> None:
        if limit < 0:
            raise ValueError(f"max_live_streams must be 0 or more, got {limit}")
        self.limit = limit
        self.lifetime = STREAM_LIFETIME_S if lifetime is None else lifetime
        self.streams: set[EventStream] = set()
        self.stopped = False

    @property
    def open(self) -> int:
        return len(self.streams)

    def stop(self) -> None:
        """End every open stream now and refuse new ones (503): for a server about to stop, which
        would otherwise wait for each stream's lifetime (``serve`` calls it)."""
        self.stopped = True
        for stream in list(self.streams):
            stream.end()

    async def endpoint(self, request: Request) -> EventStream:
        """``GET /api/events?queue=&job=&compact=``: the stream (bad parameters are a 400 before it starts)."""
        job = request.query_params.get("job")
        name = request.query_params.get("queue")
        if job:
            queue = queue_for_job(job)
            if name and name != queue.name:
                raise InvalidJobError(f"job {job!r} is not of queue {name!r}")
            queues: list[Queue] = [queue]
        else:
            queues = [get_queue(name)] if name else list(QUEUES.values())
        cursor = parse_cursor(request.headers.get("last-event-id", ""), [q.name for q in queues])
        return EventStream(self, queues, cursor, job or None, compact=request.query_params.get("compact") == "1")


def parse_cursor(value: str, queues: Iterable[str]) -> dict[str, str]:
    """``<queue>:<event id>,...`` (a stream message's id) as {queue: id}; queues it leaves out
    start at ``$`` (what is written from now on)."""
    cursor = dict.fromkeys(queues, "$")
    for part in filter(None, (p.strip() for p in value.split(","))):
        name, _, event_id = part.rpartition(":")
        if name not in cursor:
            raise InvalidJobError(f"Last-Event-ID: {part!r} names no queue of this stream")
        cursor[name] = check_since(event_id)
    return cursor


def format_cursor(cursor: dict[str, str]) -> str:
    return ",".join(f"{name}:{event_id}" for name, event_id in cursor.items())


class EventStream:
    """One client's stream, as an ASGI response that owns its Redis connection from start to end."""

    def __init__(
        self, streams: LiveStreams, queues: list[Queue], cursor: dict[str, str], job: str | None, *, compact: bool
    ) -> None:
        self.streams = streams
        self.compact = compact
        self.keys = {q.name: q.keys.events for q in queues}
        self.cursor = cursor
        self.job = job
        self._ending = False
        self._scope: anyio.CancelScope | None = None

    def end(self) -> None:
        """Send the last chunk and finish the response (the client's EventSource reconnects)."""
        self._ending = True
        if self._scope is not None:
            self._scope.cancel()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        streams = self.streams
        if streams.stopped or streams.open >= streams.limit:
            why = "the server is stopping" if streams.stopped else f"too many live streams open ({streams.limit})"
            await JSONResponse({"error": f"{why}; the page polls instead"}, status_code=503)(scope, receive, send)
            return
        streams.streams.add(self)
        client = dedicated_client()
        try:
            try:
                await _name(client)
                async with redis_errors():
                    for name, event_id in self.cursor.items():
                        if event_id == "$":
                            self.cursor[name] = await last_event_id(client, self.keys[name])
            except (RedisUnavailableError, RedisCommandError) as exc:
                await JSONResponse({"error": str(exc)}, status_code=503)(scope, receive, send)
                return
            headers = [
                (b"content-type", b"text/event-stream; charset=utf-8"),
                (b"cache-control", b"no-store"),
                (b"x-accel-buffering", b"no"),  # nginx: pass each message on at once
            ]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            left = False
            async with anyio.create_task_group() as group:
                self._scope = group.cancel_scope
                if self._ending:
                    group.cancel_scope.cancel()

                async def pump() -> None:
                    await self._pump(client, send)
                    group.cancel_scope.cancel()

                group.start_soon(pump)
                while (await receive())["type"] != "http.disconnect":
                    pass
                left = True
                group.cancel_scope.cancel()
            if not left:  # its lifetime is over, Redis went away, or the server is stopping
                await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            streams.streams.discard(self)
            await asyncio.shield(client.aclose())  # closed even when the request is cancelled

    async def _pump(self, client: Redis, send: Send) -> None:
        await send({"type": "http.response.body", "body": f"retry: {RECONNECT_MS}\n\n".encode(), "more_body": True})
        deadline = time.monotonic() + self.streams.lifetime
        scale = read_timeout_scale()
        try:
            while (left := deadline - time.monotonic()) > 0:
                block_ms = max(int(min(left, EVENTS_BLOCK_S) * 1000), 1)
                async with redis_errors(scale=scale):
                    streams = {self.keys[name]: event_id for name, event_id in self.cursor.items()}
                    reply = await client.xread(streams, count=EVENTS_READ_COUNT, block=block_ms)
                if self.compact:
                    await self._skip_ahead(client, reply)
                body = self._message(reply) or ": heartbeat\n\n"  # a write notices a client that left
                await send({"type": "http.response.body", "body": body.encode(), "more_body": True})
                if self.compact and reply:
                    await anyio.sleep(COMPACT_GAP_S)
        except (RedisUnavailableError, RedisCommandError) as exc:
            logger.warning("dashboard live stream ended: %s", exc)  # the browser reconnects

    def _queue_of(self, raw_key: bytes | str) -> str:
        key = raw_key.decode() if isinstance(raw_key, bytes) else raw_key
        return next(name for name, events_key in self.keys.items() if events_key == key)

    def _message(self, reply: list[Any]) -> str:
        events = []
        for raw_key, entries in reply:
            name = self._queue_of(raw_key)
            for event_id, fields in entries:
                event = parse_event(event_id, fields)
                self.cursor[name] = max(self.cursor[name], event.id, key=_id_order)
                if self.job is None or event.job_id == self.job:
                    events.append({"queue": name, **event.to_dict()})
        if self.compact:
            # Each job's last progress, and each queue's last other event: all the page acts on.
            last = {(e["job_id"], "progress") if e["name"] == "progress" else (e["queue"], ""): e for e in events}
            events = sorted(last.values(), key=lambda e: _id_order(e["id"]))
        if not events:
            return ""
        return f"id: {format_cursor(self.cursor)}\ndata: {json.dumps(events, separators=(',', ':'))}\n\n"

    async def _skip_ahead(self, client: Redis, reply: list[Any]) -> None:
        """A queue whose read came back full is further behind: go on from its newest event."""
        for raw_key, entries in reply:
            if len(entries) >= EVENTS_READ_COUNT:
                name = self._queue_of(raw_key)
                async with redis_errors():
                    self.cursor[name] = await last_event_id(client, self.keys[name])


async def _name(client: Redis) -> None:
    """Name the stream's connection for CLIENT LIST; a user whose ACL denies CLIENT goes unnamed."""
    try:
        async with redis_errors():
            await client.client_setname(f"{CLIENT_NAME}:{os.getpid()}:{next(_names)}")
    except RedisCommandError as exc:
        logger.debug("dashboard live stream: connection left unnamed: %s", exc)


def _id_order(event_id: str) -> tuple[int, int]:
    ms, _, seq = event_id.partition("-")
    return int(ms), int(seq or 0)


async def job_events(job_id: str, since: str | None = None) -> tuple[list[JobEvent], str]:
    """The events of one job its queue's stream still holds, oldest first, and the id to read on
    from. Without ``since``: from the job's enqueue time (earlier jobs under the same id are left
    out); with it: those after that event id."""
    queue = queue_for_job(job_id)
    if since is None:
        job = await queue.get_job(job_id)
        if job is None:
            raise JobNotFoundError(f"job {job_id} not found")
        start = "-" if job.enqueued_at is None else str(round(job.enqueued_at.timestamp() * 1000))
    elif check_since(since) == "$":
        raise InvalidJobError("since must be an event id such as '1733270400000-0'")
    else:
        start = "(" + since
    found: list[JobEvent] = []
    last = since or "0-0"
    scanned = 0
    while scanned < TIMELINE_SCAN_MAX:
        async with redis_errors(queue=queue.name):
            entries = await get_redis(queue.name).xrange(queue.keys.events, start, "+", count=TIMELINE_PAGE)
        for event_id, fields in entries:
            event = parse_event(event_id, fields)
            last = event.id
            if event.job_id == job_id:
                found.append(event)
        scanned += len(entries)
        if len(entries) < TIMELINE_PAGE:
            break
        start = "(" + last
    if since is None and not scanned:
        # Nothing since the job was enqueued: read on after the stream's newest event (older than
        # the job), never from the start, which holds earlier jobs under the same id.
        async with redis_errors(queue=queue.name):
            last = await last_event_id(get_redis(queue.name), queue.keys.events)
    return found, last


def serve(app: Starlette, **config: Any) -> None:
    """Run the dashboard app with uvicorn (``uvicorn.Config`` options in ``config``) and, when it
    stops, end the open pages' streams first: a server cannot tell its app it is stopping, and
    would otherwise wait out every stream's lifetime before it exits."""
    import uvicorn

    live: LiveStreams = app.state.live_streams

    class Server(uvicorn.Server):
        async def shutdown(self, sockets: Any = None) -> None:
            live.stop()
            await super().shutdown(sockets)

    Server(uvicorn.Config(app, **config)).run()
