"""Auto-pipelining: enqueue script calls made in one event-loop turn share one round trip.

A busy API enqueues from many requests at once; each call on its own would take a connection of
the pool and a round trip. Here the first call of an event-loop turn in which other tasks are ready
starts a task that sends the batch and waits on a future; the sending task's first step comes
after every step that was ready in this turn, and each enqueue among them joins the batch and
waits on its own future (ioredis's ``enableAutoPipelining`` works the same way, on
``process.nextTick``). When nothing else is ready to run, a lone call sends itself at once,
exactly as without auto-pipelining.

The batch goes in one round trip on one connection, the calls of each queue merged into one
script call (``_execute``):

- each caller gets its own codes, or its own error (a script error — a wrong-type key, out of
  memory — is that call's alone: a merged call that fails is sent again call by call);
- a connection error or timeout fails every caller of the batch with ``RedisUnavailableError``;
- calls run in the order they were made: the same id twice in one turn is created once;
- a caller cancelled before the batch is sent is left out (its job is never written); one
  cancelled while the batch is in flight no longer waits for its answer, and the others get
  theirs (the first caller included: cancelled before the batch goes, the batch goes without it).

``JOBQUEUE_AUTO_PIPELINE=false`` turns it off: each call then makes its own round trip.
"""

from __future__ import annotations

import asyncio
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import NoScriptError, ResponseError

from jobqueue.backend import _redis_errors, _scripts
from jobqueue.backend.connection import jobqueue_error, redis_errors
from jobqueue.constants import BULK_CHUNK
from jobqueue.settings import get_settings

_ATTRIBUTE = "_jobqueue_autopipeline"


class AutoPipeline:
    """The batch of one client (one event loop): the enqueue calls of the current turn."""

    def __init__(self, redis: Redis, queue: str | None) -> None:
        self.redis = redis
        self.queue = queue  # any queue on this client's Redis: it names the URL in errors
        self.loop = asyncio.get_running_loop()
        # The calls after the first of this turn's (None: no turn is gathering calls).
        self.joined: list[tuple[list[Any], asyncio.Future[Any]]] | None = None
        self.sending: set[asyncio.Task[None]] = set()  # held: a task nobody references may be collected

    async def enqueue(self, args: list[Any]) -> Any:
        """The codes of one ENQUEUE call with ``args``, sent with the other calls of this turn."""
        if self.joined is not None:
            future = self.loop.create_future()
            self.joined.append((args, future))
            return await future
        if not _others_ready(self.loop):
            # Nothing else is ready to run before this call's next step: no call can join it.
            async with redis_errors(scale=1 + _jobs(args) // BULK_CHUNK, queue=self.queue):
                return await _scripts.ENQUEUE(self.redis, [], args)
        # The first call of a turn in which other tasks are ready: a task sends the batch in the
        # next turn, when each of them has had its step (and joined, if it enqueues); so this
        # caller's cancellation cannot cut the others' call.
        future = self.loop.create_future()
        self.joined = [(args, future)]
        task = self.loop.create_task(self._send_joined())
        self.sending.add(task)
        task.add_done_callback(self.sending.discard)
        return await future

    async def _send_joined(self) -> None:
        joined, self.joined = self.joined or [], None
        batch = [(args, future) for args, future in joined if not future.done()]  # cancelled: left out
        if batch:
            await self._send(batch, sum(_jobs(args) for args, _ in batch))

    async def _send(self, batch: list[tuple[list[Any], asyncio.Future[Any]]], jobs: int) -> None:
        seconds = get_settings().redis_timeout * (1 + jobs // BULK_CHUNK)
        try:
            async with asyncio.timeout(seconds):
                replies = await self._execute([args for args, _ in batch])
        except asyncio.CancelledError:  # the loop is going away: so are its callers
            for _, future in batch:
                future.cancel()
            raise
        except Exception as exc:  # the whole batch failed: each caller gets jobqueue's error for it
            for _, future in batch:
                if not future.done():
                    future.set_exception(jobqueue_error(exc, seconds, self.queue) or exc)
            return
        for (_, future), reply in zip(batch, replies, strict=True):
            if future.done():
                continue  # its caller was cancelled while the batch was in flight
            if isinstance(reply, Exception):
                future.set_exception(jobqueue_error(reply, seconds, self.queue) or reply)
            else:
                future.set_result(reply)

    async def _execute(self, calls: list[list[Any]]) -> list[Any]:
        """One reply (codes, or the call's own error) per call, in one round trip.

        The calls of one queue are merged into one script call (up to ``BULK_CHUNK`` jobs): the
        script takes many jobs, and one call costs Redis and redis-py far less than a hundred.
        Should a merged call fail, its calls are sent again one by one, so that each caller gets
        its own answer. The script fails on the state of the queue's keys or of the server (a
        wrong-type key, out of memory), never on one job's arguments, which were validated
        before: sent again, a call fails the same way, or succeeds where its jobs take another
        path through the script (a delayed job needs no FIFO counter).
        """
        merged = _merge(calls)
        replies = await self._send_calls([args for args, _ in merged])
        results: list[Any] = [None] * len(calls)
        again: list[int] = []
        for (_, members), reply in zip(merged, replies, strict=True):
            if isinstance(reply, Exception) and len(members) > 1 and not _redis_errors.is_transient(reply):
                again += [i for i, _ in members]
                continue
            offset = 0
            for i, jobs in members:
                results[i] = reply if isinstance(reply, Exception) else reply[offset : offset + jobs]
                offset += jobs
        if again:
            for i, reply in zip(again, await self._send_calls([calls[i] for i in again]), strict=True):
                results[i] = reply
        return results

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


def _others_ready(loop: asyncio.AbstractEventLoop) -> bool:
    """Whether callbacks (other tasks' steps) wait to run in this turn. asyncio's own loop keeps
    them in ``_ready``; a loop without it (uvloop) is taken to have some, and the call yields."""
    ready = getattr(loop, "_ready", None)
    return ready is None or len(ready) > 0


def _jobs(args: list[Any]) -> int:
    return (len(args) - 1) // 4
