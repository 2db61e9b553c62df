"""Settings from the environment, made on first use (never at import).

``get_settings()`` reads the process environment once and caches the result; tests and hosts that
change the environment call ``get_settings.cache_clear()``. Per-queue worker options live in
``jobqueue.options``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from pydantic import Field, PrivateAttr
from pydantic_settings import BaseSettings, SettingsConfigDict

from jobqueue._env import read_settings
from jobqueue._queue_urls import queue_urls
from jobqueue.constants import DEFAULT_EVENTS_MAXLEN, DEFAULT_REDIS_STARTUP_WAIT_S, DEFAULT_REDIS_TIMEOUT_S, QueueName


class Settings(BaseSettings):
    """Process-wide settings. Field names match the environment variables (case-insensitive)."""

    model_config = SettingsConfigDict(env_prefix="", extra="ignore", populate_by_name=True)

    redis_url: str = "redis://localhost:6379"
    redis_timeout: float = Field(DEFAULT_REDIS_TIMEOUT_S, gt=0, validation_alias="JOBQUEUE_REDIS_TIMEOUT")
    redis_startup_wait: float = Field(
        DEFAULT_REDIS_STARTUP_WAIT_S, ge=0, validation_alias="JOBQUEUE_REDIS_STARTUP_WAIT"
    )
    # About this many events are kept per queue (XADD MAXLEN ~); 0 writes no events at all.
    events_maxlen: int = Field(DEFAULT_EVENTS_MAXLEN, ge=0, validation_alias="JOBQUEUE_EVENTS_MAXLEN")

    llm_provider: str = "openai"
    llm_model: str = "gpt-4o-mini"
    embedding_model: str = "text-embedding-3-small"
    embedding_dims: int = Field(1536, gt=0)
    llm_api_key: str | None = None
    llm_base_url: str | None = None

    database_url: str = "sqlite+aiosqlite:///./jobqueue.db"

    # JOBQUEUE_<QUEUE>_REDIS_URL, by queue name (jobqueue._queue_urls); private: URLs hold passwords.
    _queue_redis_urls: dict[str, str] = PrivateAttr(default_factory=dict)

    def model_post_init(self, context: Any) -> None:
        self._queue_redis_urls = queue_urls(os.environ, redact_url)

    def queue_redis_url(self, queue: str | None) -> str:
        """The Redis URL of ``queue``: its ``JOBQUEUE_<QUEUE>_REDIS_URL``, else ``REDIS_URL``."""
        if queue is None:
            return self.redis_url
        return self._queue_redis_urls.get(queue, self.redis_url)

    def redis_servers(self) -> dict[str, list[str]]:
        """Each distinct Redis URL the queues use → the queues on it, in ``QueueName`` order."""
        servers: dict[str, list[str]] = {}
        for queue in QueueName:
            servers.setdefault(self.queue_redis_url(queue.value), []).append(queue.value)
        return servers

    def __repr_args__(self) -> Iterator[tuple[str | None, Any]]:
        # A repr ends up in logs and tracebacks: URLs without their password, no API key.
        for name, value in super().__repr_args__():
            if name in ("redis_url", "database_url") and isinstance(value, str):
                value = redact_url(value)
            elif name == "llm_api_key" and value is not None:
                value = "***"
            yield name, value


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The settings of this process, read from the environment on first call.

    A bad value (e.g. ``JOBQUEUE_REDIS_TIMEOUT=soon``) raises ``ConfigurationError`` naming the variable.
    """
    return read_settings(Settings)


def redact_url(url: str) -> str:
    """``url`` without its password, for messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    user = f"{parts.username}:***@" if parts.username else "***@"
    return urlunsplit(parts._replace(netloc=user + host))
