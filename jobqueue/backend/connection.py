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

from jobqueue.backend import _redis_errors, _sentinel
from jobqueue.backend._pool import tune_pool
from jobqueue.errors import RedisCommandError, RedisUnavailableError
from jobqueue.settings import get_settings, redact_url

_clients: dict[str, Redis] = {}  # URL -> its client, all for _clients_loop
_clients_loop: asyncio.AbstractEventLoop | None = None
# Each queue's client (None: REDIS_URL's) for the settings it was looked up under: get_redis sits on
# every enqueue, and the URL lookup cost more than the rest of it.
_by_queue: tuple[dict[str | None, Redis], Any] = ({}, None)


def client_for_url(url: str) -> Redis:
    """A client for ``url``, made the one way every jobqueue client is made."""
    # No socket_timeout: redis-py then wraps every send in asyncio.wait_for, a task per command
    # (about a third of an enqueue's CPU). redis_errors() bounds each call with one timeout.
    timeout = get_settings().redis_timeout
    if _sentinel.is_sentinel_url(url):
        client = _sentinel.client(url, timeout=timeout, health_check_interval=30)
    else:
        client = Redis.from_url(url, socket_connect_timeout=timeout, health_check_interval=30)
    tune_pool(client.connection_pool)
    return client


def get_redis(queue: str | None = None) -> Redis:
    """The shared client of ``queue``'s Redis (``REDIS_URL`` when None) for the running event loop,
    created on first use; queues on the same URL share it."""
    global _clients, _clients_loop, _by_queue
    settings, loop = get_settings(), asyncio.get_running_loop()
    if _clients_loop is not loop:
        _clients, _clients_loop = {}, loop
        _by_queue = ({}, None)
    if _by_queue[1] is not settings:  # the settings were read again: URLs may have changed
        _by_queue = ({}, settings)
    known = _by_queue[0]
    client = known.get(queue)
    if client is None:
        url = settings.queue_redis_url(queue)
        client = _clients.get(url)
        if client is None:
            client = _clients[url] = client_for_url(url)
        known[queue] = client
    return client


def dedicated_client(queue: str | None = None) -> Redis:
    """A client of one connection to ``queue``'s Redis, made like the shared one, for a blocking
    call (XREAD BLOCK) that must not hold a connection of the shared pool; the caller closes it
    (``aclose()``)."""
    return Redis.from_pool(_sentinel.pool_like(get_redis(queue).connection_pool, max_connections=1))


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
        error = jobqueue_error(exc, self._seconds, self._queue)
        if error is not None:
            raise error from exc
        return False


def jobqueue_error(exc: BaseException, seconds: float, queue: str | None = None) -> Exception | None:
    """jobqueue's error for a Redis error of ``queue``'s Redis (see ``redis_errors``), or None for
    any other."""
    url = redact_url(get_settings().queue_redis_url(queue))
    if isinstance(exc, _redis_errors.TRANSIENT):
        reason = _redis_errors.describe(exc) if str(exc) else f"no answer within {seconds:g}s"
        return RedisUnavailableError(url, reason)
    if isinstance(exc, RedisError):
        return RedisCommandError(url, _redis_errors.describe(exc))
    return None


async def close_queues() -> None:
    """Close the shared connection pools (of every Redis). Safe to call more than once."""
    global _clients, _clients_loop, _by_queue
    clients, loop = _clients, _clients_loop
    _clients, _clients_loop, _by_queue = {}, None, ({}, None)
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
