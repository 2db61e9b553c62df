"""Settings from the environment, made on first use (never at import).

``get_settings()`` reads the process environment once and caches the result; tests and hosts that
change the environment call ``get_settings.cache_clear()``. Per-queue worker options live in
``jobqueue.worker.options``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from functools import lru_cache
from typing import Any, Literal

from pydantic import Field, PrivateAttr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from jobqueue._env import read_settings
from jobqueue._envnames import warn_unknown_variables
from jobqueue.backend import _sentinel
from jobqueue.backend._queue_urls import queue_urls
from jobqueue.constants import (
    DEFAULT_ENQUEUE_REPLICAS_TIMEOUT_S,
    DEFAULT_EVENTS_MAXLEN,
    DEFAULT_REDIS_STARTUP_WAIT_S,
    DEFAULT_REDIS_TIMEOUT_S,
    QueueName,
)

REDIS_SCHEMES = ("redis", "rediss", "unix", *_sentinel.SCHEMES)
# Query options whose value is a secret: redis-py takes a password there too.
_SECRET_QUERY = re.compile(r"(?<=[?&])((?:sentinel_)?password)=[^&#]*")


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
    # OpenTelemetry traces (jobqueue.tracing): "auto" traces when opentelemetry-api is installed
    # (the ``otel`` extra), "on" requires it, "off" never imports it.
    tracing: Literal["auto", "on", "off"] = Field("auto", validation_alias="JOBQUEUE_TRACING")
    # Enqueues issued in one event-loop turn share one round trip (jobqueue.backend._autopipeline).
    auto_pipeline: bool = Field(True, validation_alias="JOBQUEUE_AUTO_PIPELINE")
    # Replicated acknowledgement (docs/production.md): an enqueue returns once this many replicas
    # have its write (WAIT), or raises NotReplicatedError after the timeout. 0: no wait.
    enqueue_replicas: int = Field(0, ge=0, validation_alias="JOBQUEUE_ENQUEUE_REPLICAS")
    enqueue_replicas_timeout: float = Field(
        DEFAULT_ENQUEUE_REPLICAS_TIMEOUT_S, gt=0, validation_alias="JOBQUEUE_ENQUEUE_REPLICAS_TIMEOUT"
    )

    llm_provider: str = "openai"
    llm_model: str = "gpt-4o-mini"
    embedding_model: str = "text-embedding-3-small"
    embedding_dims: int = Field(1536, gt=0)
    llm_api_key: str | None = None
    llm_base_url: str | None = None

    database_url: str = "sqlite+aiosqlite:///./jobqueue.db"

    # JOBQUEUE_<QUEUE>_REDIS_URL, by queue name (jobqueue.backend._queue_urls); private: URLs hold passwords.
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

    @field_validator("redis_url")
    @classmethod
    def _known_url(cls, url: str) -> str:
        return check_redis_url(url)

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

    A bad value (e.g. ``JOBQUEUE_REDIS_TIMEOUT=soon``) raises ``ConfigurationError`` naming the variable;
    an unknown ``JOBQUEUE_*`` variable (a misspelt one) is logged once, with the closest known name.
    """
    warn_unknown_variables()
    return read_settings(Settings)


def check_redis_url(url: str) -> str:
    """``url`` when it is a Redis URL jobqueue can use; else ``ValueError`` saying why (no password)."""
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme not in REDIS_SCHEMES:
        schemes = ", ".join(s + "://" for s in REDIS_SCHEMES)
        raise ValueError(f"{redact_url(url)!r} is not a Redis URL: it starts with one of {schemes}")
    if scheme in _sentinel.SCHEMES:
        try:
            _sentinel.parse(url)
        except ValueError as exc:
            raise ValueError(f"{redact_url(url)!r}: {exc}") from None
    return url


def redact_url(url: str) -> str:
    """``url`` without its passwords (the server's, and a Sentinel URL's ``sentinel_password``),
    for messages and logs. Takes any URL, a Sentinel URL's list of hosts included."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    cut = min((i for i in (rest.find("/"), rest.find("?"), rest.find("#")) if i >= 0), default=len(rest))
    netloc, tail = rest[:cut], rest[cut:]
    userinfo, at, hosts = netloc.rpartition("@")
    if at and ":" in userinfo:
        user = userinfo.split(":", 1)[0]
        netloc = (f"{user}:***@" if user else "***@") + hosts
    return f"{scheme}://{netloc}{_SECRET_QUERY.sub(_hidden, tail)}"


def _hidden(match: re.Match[str]) -> str:
    return f"{match.group(1)}=***"
