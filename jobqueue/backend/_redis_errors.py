"""Which Redis errors are worth waiting out, and how each reads to a person.

redis-py maps LOADING and READONLY to their own classes but leaves BUSY (a long script),
MASTERDOWN and TRYAGAIN as plain ``ResponseError``; ``register()`` gives them a class too, so a
worker's connection pool can retry them like a dropped connection (arq's own calls included).
"""

from __future__ import annotations

import asyncio

from redis._parsers.base import BaseParser
from redis.exceptions import (
    BusyLoadingError,
    NoPermissionError,
    OutOfMemoryError,
    ReadOnlyError,
    ResponseError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError


class TransientResponseError(ResponseError):
    """BUSY, MASTERDOWN or TRYAGAIN: the server cannot serve now, and will again."""


_TRANSIENT_CODES = ("BUSY", "MASTERDOWN", "TRYAGAIN")


def register() -> None:
    """Teach redis-py's reply parsers the transient codes (idempotent; a subclass of
    ``ResponseError``, so code that catches ``ResponseError`` is unaffected)."""
    for code in _TRANSIENT_CODES:
        BaseParser.EXCEPTION_CLASSES.setdefault(code, TransientResponseError)


# Errors that go away by themselves: the connection, or the server being busy or read-only.
TRANSIENT: tuple[type[BaseException], ...] = (
    RedisConnectionError,
    RedisTimeoutError,
    OSError,
    asyncio.TimeoutError,
    BusyLoadingError,
    ReadOnlyError,
    TransientResponseError,
)


# What a worker waits out as well: Redis out of memory (under noeviction it frees up as jobs end
# and records are trimmed), which a caller is told at once instead.
WORKER_TRANSIENT: tuple[type[BaseException], ...] = (*TRANSIENT, OutOfMemoryError)


def describe(exc: BaseException) -> str:
    """One line saying what happened, for ``RedisUnavailableError`` and ``RedisCommandError``."""
    text = str(exc)
    if isinstance(exc, TransientResponseError):
        # redis-py strips the code: "Valkey is busy running a script...", "MASTERDOWN ..." etc.
        if "busy" in text.lower():
            return f"Redis is busy running a long script ({text})"
        return f"Redis cannot serve now ({text})"
    if isinstance(exc, ReadOnlyError):
        return (
            "Redis is a read-only replica; after a failover, point REDIS_URL at the primary "
            f"(or use a redis+sentinel:// URL, which follows it) ({text})"
        )
    if isinstance(exc, BusyLoadingError):
        return f"Redis is loading its data set ({text})"
    if isinstance(exc, OutOfMemoryError):
        return (
            f"Redis is out of memory ({text}); raise maxmemory, "
            "and keep maxmemory-policy noeviction so no job is ever evicted"
        )
    if isinstance(exc, NoPermissionError):
        return f"the Redis user lacks a permission ({text})"
    return text or type(exc).__name__


def is_transient(exc: BaseException) -> bool:
    return isinstance(exc, TRANSIENT)


register()
