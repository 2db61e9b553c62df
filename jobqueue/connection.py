"""The process's one Redis connection pool, created lazily from ``REDIS_URL``.

The pool belongs to the event loop that first used it: a call from another loop (a new
``asyncio.run``, a test with its own loop) gets a fresh pool, so a client never crosses loops.
"""

from __future__ import annotations

import asyncio
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from jobqueue import _redis_errors
from jobqueue.errors import RedisCommandError, RedisUnavailableError
from jobqueue.settings import get_settings, redact_url

_client: Redis | None = None
_client_loop: asyncio.AbstractEventLoop | None = None


def client_for_url(url: str) -> Redis:
    """A client for ``url``, made the one way every jobqueue client is made."""
    # No socket_timeout: redis-py then wraps every send in asyncio.wait_for, a task per command
    # (about a third of an enqueue's CPU). redis_errors() bounds each call with one timeout.
    return Redis.from_url(url, socket_connect_timeout=get_settings().redis_timeout, health_check_interval=30)


def _new_client() -> Redis:
    return client_for_url(get_settings().redis_url)


def get_redis() -> Redis:
    """The shared client for the running event loop (created on first use)."""
    global _client, _client_loop
    loop = asyncio.get_running_loop()
    if _client is None or _client_loop is not loop:
        _client = _new_client()
        _client_loop = loop
    return _client


def dedicated_client() -> Redis:
    """A client of one connection, made like the shared one, for a blocking call (XREAD BLOCK)
    that must not hold a connection of the shared pool; the caller closes it (``aclose()``)."""
    shared = get_redis().connection_pool
    pool = type(shared)(connection_class=shared.connection_class, max_connections=1, **shared.connection_kwargs)
    return Redis.from_pool(pool)


class redis_errors:  # lower-case: used like the context-manager function it replaced
    """Bound the calls inside to ``JOBQUEUE_REDIS_TIMEOUT`` (times ``scale``, for big pipelines)
    and turn Redis errors into jobqueue's, naming the redacted URL: unreachable, busy, loading or
    read-only → ``RedisUnavailableError``; any other refusal (OOM, NOPERM...) → ``RedisCommandError``.

    A class rather than ``@asynccontextmanager``: it sits on every enqueue, and the generator
    machinery cost as much as the timeout itself.
    """

    __slots__ = ("_seconds", "_timeout")

    def __init__(self, scale: float = 1.0) -> None:
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
        error = jobqueue_error(exc, self._seconds)
        if error is not None:
            raise error from exc
        return False


def jobqueue_error(exc: BaseException, seconds: float) -> Exception | None:
    """jobqueue's error for a Redis error (see ``redis_errors``), or None for any other."""
    url = redact_url(get_settings().redis_url)
    if isinstance(exc, _redis_errors.TRANSIENT):
        reason = _redis_errors.describe(exc) if str(exc) else f"no answer within {seconds:g}s"
        return RedisUnavailableError(url, reason)
    if isinstance(exc, RedisError):
        return RedisCommandError(url, _redis_errors.describe(exc))
    return None


async def close_queues() -> None:
    """Close the shared connection pool. Safe to call more than once."""
    global _client, _client_loop
    client, loop = _client, _client_loop
    _client = _client_loop = None
    if client is not None and loop is asyncio.get_running_loop():
        await client.aclose()


async def check_queues_health() -> bool:
    """True when Redis answers a PING within the configured timeout; never raises."""
    try:
        redis = get_redis()
        timeout = get_settings().redis_timeout
        return bool(await asyncio.wait_for(redis.ping(), timeout))
    except Exception:  # health checks report, they do not raise
        return False
