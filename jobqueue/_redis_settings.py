"""arq ``RedisSettings`` resolved from ``REDIS_URL`` when a worker first reads them, not at import."""

from __future__ import annotations

from typing import Any

from arq.connections import RedisSettings
from redis.asyncio.connection import SSLConnection, parse_url
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from jobqueue.settings import get_settings, redact_url

# A worker rides out a Redis restart: each command is retried with backoff for about 20 s, and at
# start-up the connection is retried for 30 s, before the worker gives up and exits non-zero.
COMMAND_RETRIES = 10
STARTUP_RETRIES = 30


# TLS options a rediss:// URL may carry in its query (redis-py parses them; arq takes them as fields).
SSL_QUERY_OPTIONS = (
    "ssl_keyfile",
    "ssl_certfile",
    "ssl_cert_reqs",
    "ssl_ca_certs",
    "ssl_ca_data",
    "ssl_check_hostname",
)


def redis_settings_from_url(url: str, timeout: float) -> RedisSettings:
    kw = parse_url(url)
    return RedisSettings(
        host=kw.get("host", "localhost"),
        port=kw.get("port", 6379),
        unix_socket_path=kw.get("path"),
        database=int(kw.get("db", 0)),
        username=kw.get("username"),
        password=kw.get("password"),
        ssl=kw.get("connection_class") is SSLConnection,
        **{name: kw[name] for name in SSL_QUERY_OPTIONS if name in kw},
        conn_timeout=int(max(timeout, 1)),
        conn_retries=STARTUP_RETRIES,
        conn_retry_delay=1,
        # OSError too: redis-py 5 retries a failed connect only for errors in this list, and a
        # refused connection reaches it as a bare ConnectionRefusedError.
        retry_on_error=[RedisConnectionError, RedisTimeoutError, OSError],
        retry=Retry(ExponentialBackoff(cap=3.0, base=0.1), COMMAND_RETRIES),
    )


class LazyRedisSettings:
    """Stands in for ``RedisSettings`` in a ``WorkerSettings`` class; reads the settings on use."""

    def _resolve(self) -> RedisSettings:
        settings = get_settings()
        return redis_settings_from_url(settings.redis_url, settings.redis_timeout)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._resolve(), name)

    def __repr__(self) -> str:
        return f"RedisSettings(url={redact_url(get_settings().redis_url)!r})"
