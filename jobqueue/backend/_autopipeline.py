"""Auto-pipelining: enqueue script calls made in one event-loop turn share one connection and
are written without waiting for each other's replies.

A busy API enqueues from many requests at once; each call on its own would take a connection of
the pool and a round trip. Here, when other tasks are ready to run in the same turn, a call waits
on a future instead: the calls of the turn gather, and a callback that comes after every step that
was ready in this turn writes what has gathered (ioredis's ``enableAutoPipelining`` works the same
way, on ``process.nextTick``). When nothing else is ready to run, a lone call sends itself at once,
exactly as without auto-pipelining.

The calls are written on one connection the batch keeps (taken from the pool once), the calls of
each queue merged into one script call, in order; one task reads the replies in the order written.
Once ``WRITE_AT`` jobs have gathered in a turn they are written at once, before the turn ends, so
that Redis runs them while the rest of the turn's callers prepare theirs (100 calls in one turn:
about seven writes on one connection, and Redis never idle while the callers work). Then:

- each caller gets its own codes, or its own error (a script error — a wrong-type key, out of
  memory — is that call's alone: a merged call that fails is sent again call by call, as is a
  call Redis answers NOSCRIPT, which loads the script);
- a lost connection, or no reply within ``JOBQUEUE_REDIS_TIMEOUT`` (times the call's thousands of
  jobs), fails every caller still waiting on that connection with ``RedisUnavailableError``, as one
  round trip would; the connection is closed and made again for the next call;
- calls run in the order they were made: the same id twice in one turn is created once;
- a caller cancelled before its call is written is left out (its job is never written); one
  cancelled after no longer waits for its answer, and the others get theirs.

``JOBQUEUE_AUTO_PIPELINE=false`` turns it off: each call then makes its own round trip.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import NoScriptError, ResponseError

from jobqueue.backend import _redis_errors, _scripts
from jobqueue.backend.connection import jobqueue_error, redis_errors
from jobqueue.constants import BULK_CHUNK
from jobqueue.settings import get_settings

_ATTRIBUTE = "_jobqueue_autopipeline"
# Jobs gathered in a turn that are written at once, before the turn ends (measured: 8, 16, 32 and
# 64 against 100 calls in flight; 16 was best, and keeps a write well under a round trip's cost).
WRITE_AT = 16


Call = tuple[list[Any], "asyncio.Future[Any]"]  # an ENQUEUE call's arguments, and its caller's future


class _Written:
    """One script call written on the batch's connection, its reply not read yet."""

    __slots__ = ("calls", "deadline", "members", "seconds")

    def __init__(self, calls: list[Call], members: list[tuple[int, int]], seconds: float, deadline: float) -> None:
        self.calls, self.members, self.seconds, self.deadline = calls, members, seconds, deadline


class AutoPipeline:
    """The enqueue calls of one client (one event loop) that wait to be written or answered."""

    def __init__(self, redis: Redis, queue: str | None) -> None:
        self.redis = redis
        self.queue = queue  # any queue on this client's Redis: it names the URL in errors
        self.loop = asyncio.get_running_loop()
        self.pending: list[Call] = []  # calls of this turn, not written yet
        self.pending_jobs = 0
        self.flush: asyncio.Handle | None = None  # writes what is pending once this turn's steps ran
        self.connection: Any = None  # the batch's own connection (taken from the pool, kept)
        self.usable = False  # connected, and no failure seen on it since
        self.connecting = False
        self.written: deque[_Written] = deque()  # replies to read, in the order written
        self.reader: asyncio.Task[None] | None = None  # reads them while there are some
        self.tasks: set[asyncio.Task[None]] = set()  # held: a task nobody references may be collected

    async def enqueue(self, args: list[Any]) -> Any:
        """The codes of one ENQUEUE call with ``args``, sent with the other calls of this turn."""
        if self.flush is None and not _others_ready(self.loop):
            # Nothing else is ready to run before this call's next step: no call can join it.
            async with redis_errors(scale=1 + _jobs(args) // BULK_CHUNK, queue=self.queue):
                return await _scripts.ENQUEUE(self.redis, [], args)
        future = self.loop.create_future()
        self.pending.append((args, future))
        self.pending_jobs += _jobs(args)
        if self.flush is None:
            self.flush = self.loop.call_soon(self._flush)
        elif self.pending_jobs >= WRITE_AT and self._writable():
            # Redis runs these while the callers still to come this turn prepare theirs.
            self._write()
        return await future

    def _flush(self) -> None:
        self.flush = None
        if not self.pending:
            return
        if self._writable():
            self._write()
        elif not self.connecting:
            self._spawn(self._connect_and_write())

    def _writable(self) -> bool:
        return self.usable and not self.connecting and _open(self.connection)

    def _spawn(self, step: Any) -> asyncio.Task[None]:
        task = self.loop.create_task(step)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

    def _write(self) -> None:
        """Write the pending calls (those whose callers still wait) on the batch's connection."""
        calls = [(args, future) for args, future in self.pending if not future.done()]
        self.pending, self.pending_jobs = [], 0
        if not calls:
            return
        settings = get_settings()
        sha = _scripts.ENQUEUE.sha
        packed: list[bytes] = []
        for args, members in _merge([args for args, _ in calls]):
            seconds = settings.redis_timeout * (1 + sum(jobs for _, jobs in members) // BULK_CHUNK)
            self.written.append(_Written([calls[i] for i, _ in members], members, seconds, self.loop.time() + seconds))
            packed += self.connection.pack_command("EVALSHA", sha, 0, *args)
        self.connection._writer.writelines(packed)
        if self.reader is None:
            self.reader = self._spawn(self._read())

    async def _connect_and_write(self) -> None:
        """(Re)connect the batch's connection, then write what is pending."""
        self.connecting = True
        try:
            if self.reader is not None:  # replies still on their way on the old connection
                await asyncio.wait([self.reader])
            async with asyncio.timeout(get_settings().redis_timeout):
                if self.connection is None:
                    self.connection = await _taken(self.redis.connection_pool)
                elif not (self.usable and _open(self.connection)):
                    await self.connection.disconnect()
                    await self.connection.connect()
            self.usable = True
        except Exception as exc:
            calls, self.pending, self.pending_jobs = self.pending, [], 0
            self._fail(calls, exc, get_settings().redis_timeout)
            return
        finally:
            self.connecting = False
        if self.pending:
            self._write()

    async def _read(self) -> None:
        """Read the written calls' replies in order and answer their callers."""
        connection = self.connection
        try:
            while self.written:
                head = self.written[0]
                try:
                    async with asyncio.timeout_at(head.deadline):
                        reply = await connection.read_response(disconnect_on_error=False)
                except ResponseError as exc:
                    reply = exc
                self.written.popleft()
                self._answer(head, reply)
        except asyncio.CancelledError:  # the loop is going away: so are the callers
            self.usable = False
            for head in self.written:
                for _, future in head.calls:
                    future.cancel()
            self.written.clear()
            raise
        except Exception as exc:  # the connection is lost (or timed out): so is every reply on it
            self.usable = False  # nothing more is written on it (before the await below)
            written, self.written = list(self.written), deque()
            for head in written:
                self._fail(head.calls, exc, head.seconds)
            await connection.disconnect(nowait=True)
        finally:
            self.reader = None

    def _answer(self, head: _Written, reply: Any) -> None:
        if isinstance(reply, NoScriptError) or (
            isinstance(reply, Exception) and len(head.calls) > 1 and not _redis_errors.is_transient(reply)
        ):
            # Redis lacks the script (restarted, flushed), or the merged call failed on a state of
            # the server: each call again on its own, which loads the script if need be.
            self._spawn(self._send([c for c in head.calls if not c[1].done()], head.seconds))
            return
        offset = 0
        for (_, future), (_, jobs) in zip(head.calls, head.members, strict=True):
            self._settle(future, reply if isinstance(reply, Exception) else reply[offset : offset + jobs], head.seconds)
            offset += jobs

    def _fail(self, calls: list[Call], exc: Exception, seconds: float) -> None:
        for _, future in calls:
            self._settle(future, exc, seconds)

    def _settle(self, future: asyncio.Future[Any], reply: Any, seconds: float) -> None:
        """Give a caller its codes, or jobqueue's error for its Redis error; a caller cancelled
        while its call was in flight is gone."""
        if future.done():
            return
        if isinstance(reply, Exception):
            future.set_exception(jobqueue_error(reply, seconds, self.queue) or reply)
        else:
            future.set_result(reply)

    async def _send(self, batch: list[Call], seconds: float) -> None:
        """Each call of ``batch`` on its own, on a connection of the pool."""
        try:
            async with asyncio.timeout(seconds):
                replies = await self._send_calls([args for args, _ in batch])
        except Exception as exc:
            self._fail(batch, exc, seconds)
            return
        for (_, future), reply in zip(batch, replies, strict=True):
            self._settle(future, reply, seconds)

    async def _send_calls(self, calls: list[list[Any]]) -> list[Any]:
        """Each call's reply or its own Redis error, in one round trip; a lost connection raises."""
        script, redis = _scripts.ENQUEUE, self.redis
        if len(calls) == 1:  # a plain EVALSHA, as without auto-pipelining
            try:
                return [await script(redis, [], calls[0])]
            except ResponseError as exc:
                return [exc]
        replies = await self._pipeline(calls)
        missing = [i for i, reply in enumerate(replies) if isinstance(reply, NoScriptError)]
        if missing:  # Redis restarted or was flushed: load the script, send those calls again
            await redis.script_load(script.text)
            for i, reply in zip(missing, await self._pipeline([calls[i] for i in missing]), strict=True):
                replies[i] = reply
        return replies

    async def _pipeline(self, calls: list[list[Any]]) -> list[Any]:
        pipe = self.redis.pipeline(transaction=False)
        for args in calls:
            _scripts.ENQUEUE.queue_in(pipe, [], args)
        return await pipe.execute(raise_on_error=False)


def _merge(calls: list[list[Any]]) -> list[tuple[list[Any], list[tuple[int, int]]]]:
    """The calls as script calls of one queue each, in order, at most ``BULK_CHUNK`` jobs per
    call: each its arguments and its members (index of the call, jobs of the call)."""
    merged: list[tuple[list[Any], list[tuple[int, int]]]] = []
    open_by_queue: dict[Any, tuple[list[Any], list[tuple[int, int]]]] = {}
    jobs_in: dict[Any, int] = {}  # jobs in each queue's open call
    for i, args in enumerate(calls):
        queue, jobs = args[0], _jobs(args)
        current = open_by_queue.get(queue)
        if current is None or jobs_in[queue] + jobs > BULK_CHUNK:
            current = open_by_queue[queue] = ([queue], [])
            jobs_in[queue] = 0
            merged.append(current)
        current[0].extend(args[1:])
        current[1].append((i, jobs))
        jobs_in[queue] += jobs
    return merged


def enabled() -> bool:
    return get_settings().auto_pipeline


def batch_for(redis: Redis, queue: str | None = None) -> AutoPipeline:
    """The auto-pipeline of ``redis`` (the Redis of ``queue``): its ``enqueue`` sends an ENQUEUE
    call in one round trip with the other enqueue calls of this event-loop turn."""
    pipeline: AutoPipeline | None = getattr(redis, _ATTRIBUTE, None)
    if pipeline is None:
        pipeline = AutoPipeline(redis, queue)
        setattr(redis, _ATTRIBUTE, pipeline)
    return pipeline


def _taken(pool: Any) -> Any:
    """A connection of ``pool`` (redis-py 5.3 takes no command name, and warns when given one;
    earlier 5.x releases require it)."""
    try:
        return pool.get_connection()
    except TypeError:
        return pool.get_connection("EVALSHA")


def _open(connection: Any) -> bool:
    """Connected and no end seen (replies to earlier calls may be on their way)."""
    reader, writer = connection._reader, connection._writer
    return reader is not None and writer is not None and not reader.at_eof() and not writer.transport.is_closing()


def _others_ready(loop: asyncio.AbstractEventLoop) -> bool:
    """Whether callbacks (other tasks' steps) wait to run in this turn. asyncio's own loop keeps
    them in ``_ready``; a loop without it (uvloop) is taken to have some, and the call yields."""
    ready = getattr(loop, "_ready", None)
    return ready is None or len(ready) > 0


def _jobs(args: list[Any]) -> int:
    return (len(args) - 1) // 4
