"""arq ``RedisSettings`` resolved from the queue's Redis URL (``JOBQUEUE_<QUEUE>_REDIS_URL``, else
``REDIS_URL``) when a worker first reads them, not at import."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any

import redis
from arq.connections import ArqRedis, RedisSettings
from redis.asyncio.connection import SSLConnection, parse_url
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff

from jobqueue.backend import _redis_errors, _sentinel
from jobqueue.settings import get_settings, redact_url

logger = logging.getLogger("jobqueue.worker")

# A worker rides out a Redis restart, a failover or a long script: each command is retried with
# backoff for about 20 s before the worker gives up and exits non-zero. A command that gets no
# answer within JOBQUEUE_REDIS_TIMEOUT is not re-sent by redis-py (that would multiply the wait):
# jobqueue's own calls retry it within the same 20 s, and CLAIM and FINISH answer a re-send as the
# first call (jobqueue.worker._state).
COMMAND_RETRIES = 10
_NOT_RETRIED = (_redis_errors.RedisTimeoutError, TimeoutError)
# At start-up a worker says at once when Redis does not answer, and probes it this often until
# JOBQUEUE_REDIS_STARTUP_WAIT has passed; then it exits.
STARTUP_PROBE_INTERVAL_S = 1.0

_answered: set[str] = set()


@dataclass
class SentinelRedisSettings(RedisSettings):
    """arq ``RedisSettings`` for a Sentinel URL. arq's own pool for ``sentinel=True`` passes on
    neither timeouts, retries, TLS options nor the sentinels' password, so jobqueue's ``Worker``
    makes the pool itself from ``url`` (``create_sentinel_pool``); arq's ``--check`` still works
    with the fields arq reads (the sentinels' addresses, the service, the database)."""

    url: str = ""
    timeout: float = 5.0

    def __repr__(self) -> str:
        return f"RedisSettings(url={redact_url(self.url)!r})"


def redis_settings_from_url(url: str, timeout: float) -> RedisSettings:
    if _sentinel.is_sentinel_url(url):
        return _sentinel_settings(url, timeout)
    kw = parse_url(url)
    return RedisSettings(
        host=kw.get("host", "localhost"),
        port=kw.get("port", 6379),
        unix_socket_path=kw.get("path"),
        database=int(kw.get("db", 0)),
        username=kw.get("username"),
        password=kw.get("password"),
        ssl=kw.get("connection_class") is SSLConnection,
        ssl_ca_certs=kw.get("ssl_ca_certs"),
        ssl_certfile=kw.get("ssl_certfile"),
        ssl_keyfile=kw.get("ssl_keyfile"),
        ssl_cert_reqs=kw.get("ssl_cert_reqs", "required"),
        conn_timeout=int(max(timeout, 1)),
        conn_retries=2,
        conn_retry_delay=1,
        retry_on_error=_retried_errors(),
        retry=_retry(),
    )


def _retry() -> Retry:
    return Retry(ExponentialBackoff(cap=3.0, base=0.1), COMMAND_RETRIES)


# OSError too: redis-py 5 retries a failed connect only for errors in this list, and a refused
# connection reaches it as a bare ConnectionRefusedError.
def _retried_errors() -> list[type[BaseException]]:
    return [e for e in _redis_errors.WORKER_TRANSIENT if e not in _NOT_RETRIED]


def _sentinel_settings(url: str, timeout: float) -> SentinelRedisSettings:
    target = _sentinel.parse(url)
    return SentinelRedisSettings(
        host=target.sentinels,  # type: ignore[arg-type]  # arq takes the sentinels' addresses here
        sentinel=True,
        sentinel_master=target.service,
        database=target.db,
        username=target.username,
        password=target.password,
        ssl=target.tls,
        conn_timeout=int(max(timeout, 1)),
        conn_retries=2,
        conn_retry_delay=1,
        retry_on_error=_retried_errors(),  # type: ignore[arg-type]
        retry=_retry(),
        url=url,
        timeout=timeout,
    )


async def create_sentinel_pool(settings: SentinelRedisSettings, **arq_options: Any) -> ArqRedis:
    """A worker's pool (arq's ``ArqRedis``) on the current primary of a Sentinel URL's service:
    ``create_pool`` of arq, with the timeouts, retries and TLS options of any other worker pool.
    ``arq_options`` are the ``ArqRedis`` attributes arq sets (serializers, queue name...)."""
    pool = _sentinel.client(
        settings.url,
        timeout=settings.timeout,
        redis_class=ArqRedis,
        retry=settings.retry,
        retry_on_error=settings.retry_on_error,
        encoding="utf8",
    )
    for name, value in arq_options.items():
        setattr(pool, name, value)
    tries = 0
    while True:
        try:
            await pool.ping()
            return pool
        except _redis_errors.WORKER_TRANSIENT as exc:
            if tries >= settings.conn_retries:
                await pool.aclose()
                raise
            tries += 1
            logger.warning(
                "Redis is not answering at %s (%s), %d retries remaining",
                redact_url(settings.url),
                _redis_errors.describe(exc),
                settings.conn_retries - tries + 1,
            )
            await asyncio.sleep(settings.conn_retry_delay)


def wait_for_redis(url: str, timeout: float, wait: float) -> None:
    """Block until Redis answers a PING at ``url``: a worker's first step, before arq's own pool.

    Says at once (one log line, password-free URL) when it does not, and exits the process with a
    one-line message after ``wait`` seconds.
    """
    if url in _answered:
        return
    deadline = time.monotonic() + wait
    warned = False
    while True:
        client = _sentinel.sync_client(url, timeout=timeout)
        try:
            client.ping()
        except redis.RedisError as exc:
            reason = _redis_errors.describe(exc)
            if time.monotonic() + STARTUP_PROBE_INTERVAL_S > deadline:
                raise SystemExit(
                    f"jobqueue: Redis is not answering at {redact_url(url)} ({reason}); gave up after {wait:g}s"
                ) from None
            if not warned:
                logger.error(
                    "Redis is not answering at %s (%s); waiting up to %gs for it", redact_url(url), reason, wait
                )
                warned = True
            time.sleep(STARTUP_PROBE_INTERVAL_S)
        else:
            _answered.add(url)
            if warned:
                logger.info("Redis answers at %s", redact_url(url))
            return
        finally:
            _sentinel.close_sync_client(client)


def bound_reads(connection_pool: Any) -> None:
    """Give a worker's pool (arq makes it without one) a read timeout of JOBQUEUE_REDIS_TIMEOUT:
    a Redis that stops answering without closing the connection then fails the command in bounded
    time instead of hanging the worker."""
    timeout = get_settings().redis_timeout
    connection_pool.connection_kwargs["socket_timeout"] = timeout
    for connection in [*connection_pool._available_connections, *connection_pool._in_use_connections]:
        connection.socket_timeout = timeout


class LazyRedisSettings:
    """Stands in for ``RedisSettings`` in a ``WorkerSettings`` class; reads the settings on use:
    the Redis of ``queue`` (its ``JOBQUEUE_<QUEUE>_REDIS_URL``, else ``REDIS_URL``)."""

    def __init__(self, queue: str | None = None) -> None:
        self._queue = queue

    def resolve(self) -> RedisSettings:
        settings = get_settings()
        url = settings.queue_redis_url(self._queue)
        wait_for_redis(url, settings.redis_timeout, settings.redis_startup_wait)
        return redis_settings_from_url(url, settings.redis_timeout)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):  # copy, pickle and the like; no RedisSettings field starts so
            raise AttributeError(name)
        return getattr(self.resolve(), name)

    def __repr__(self) -> str:
        return f"RedisSettings(url={redact_url(get_settings().queue_redis_url(self._queue))!r})"


def resolved(settings: Any) -> Any:
    """The ``RedisSettings`` behind a ``LazyRedisSettings`` (any other settings as they are)."""
    return settings.resolve() if isinstance(settings, LazyRedisSettings) else settings
