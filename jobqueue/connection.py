"""The process's Redis connection pools, created lazily: one per distinct URL, ``REDIS_URL`` and any
``JOBQUEUE_<QUEUE>_REDIS_URL`` (a queue on a server of its own). Every call about a queue goes to
that queue's pool (``get_redis(queue)``), and its errors name that queue's URL.

The pools belong to the event loop that first used them: a call from another loop (a new
``asyncio.run``, a test with its own loop) gets fresh pools, so a client never crosses loops.
"""

from __future__ import annotations

import asyncio
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from jobqueue import _redis_errors
from jobqueue.errors import RedisCommandError, RedisUnavailableError
from jobqueue.settings import get_settings, redact_url

_clients: dict[str, Redis] = {}  # URL -> its client, all for _clients_loop
_clients_loop: asyncio.AbstractEventLoop | None = None


def client_for_url(url: str) -> Redis:
    """A client for ``url``, made the one way every jobqueue client is made."""
    # No socket_timeout: redis-py then wraps every send in asyncio.wait_for, a task per command
    # (about a third of an enqueue's CPU). redis_errors() bounds each call with one timeout.
    return Redis.from_url(url, socket_connect_timeout=get_settings().redis_timeout, health_check_interval=30)


def get_redis(queue: str | None = None) -> Redis:
    """The shared client of ``queue``'s Redis (``REDIS_URL`` when None) for the running event loop,
    created on first use; queues on the same URL share it."""
    global _clients, _clients_loop
    url = get_settings().queue_redis_url(queue)
    loop = asyncio.get_running_loop()
    if _clients_loop is not loop:
        _clients, _clients_loop = {}, loop
    client = _clients.get(url)
    if client is None:
        client = _clients[url] = client_for_url(url)
    return client


def dedicated_client(queue: str | None = None) -> Redis:
    """A client of one connection to ``queue``'s Redis, made like the shared one, for a blocking
    call (XREAD BLOCK) that must not hold a connection of the shared pool; the caller closes it
    (``aclose()``)."""
    shared = get_redis(queue).connection_pool
    pool = type(shared)(connection_class=shared.connection_class, max_connections=1, **shared.connection_kwargs)
    return Redis.from_pool(pool)


class redis_errors:  # lower-case: used like the context-manager function it replaced
    """Bound the calls inside to ``JOBQUEUE_REDIS_TIMEOUT`` (times ``scale``, for big pipelines)
    and turn Redis errors into jobqueue's, naming the redacted URL of ``queue``'s Redis
    (``REDIS_URL`` when None): unreachable, busy, loading or read-only → ``RedisUnavailableError``;
    any other refusal (OOM, NOPERM...) → ``RedisCommandError``.

    A class rather than ``@asynccontextmanager``: it sits on every enqueue, and the generator
    machinery cost as much as the timeout itself.
    """

    __slots__ = ("_queue", "_seconds", "_timeout")

    def __init__(self, scale: float = 1.0, *, queue: str | None = None) -> None:
        self._queue = queue
        self._seconds = get_settings().redis_timeout * scale
        self._timeout = asyncio.timeout(self._seconds)

    async def __aenter__(self) -> None:
        await self._timeout.__aenter__()

    async def __aexit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> bool:
        try:
            await self._timeout.__aexit__(exc_type, exc, tb)
        except _redis_errors.TRANSIENT as timeout_exc:
            exc = timeout_exc
        if exc is None:
            return False
        url = redact_url(get_settings().queue_redis_url(self._queue))
        if isinstance(exc, _redis_errors.TRANSIENT):
            reason = _redis_errors.describe(exc) if str(exc) else f"no answer within {self._seconds:g}s"
            raise RedisUnavailableError(url, reason) from exc
        if isinstance(exc, RedisError):
            raise RedisCommandError(url, _redis_errors.describe(exc)) from exc
        return False


async def close_queues() -> None:
    """Close the shared connection pools (of every Redis). Safe to call more than once."""
    global _clients, _clients_loop
    clients, loop = _clients, _clients_loop
    _clients, _clients_loop = {}, None
    if loop is asyncio.get_running_loop():
        for client in clients.values():
            await client.aclose()


async def check_queues_health() -> bool:
    """True when every Redis the queues use (each queue's own, and ``REDIS_URL`` while some queue
    has none) answers a PING within the configured timeout; never raises."""
    try:
        settings = get_settings()
        pings = [get_redis(queues[0]).ping() for queues in settings.redis_servers().values()]
        answers = await asyncio.wait_for(asyncio.gather(*pings, return_exceptions=True), settings.redis_timeout)
        return all(answer is True for answer in answers)
    except Exception:  # health checks report, they do not raise
        return False
