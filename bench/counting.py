"""Counting what a measured step costs: Redis commands (client and server side) and CPU time."""

from __future__ import annotations

import hashlib
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from redis.asyncio.connection import Connection

from bench.server import Admin
from jobqueue.backend import _pool


def script_names() -> dict[str, str]:
    """SHA1 -> name of jobqueue's Lua scripts, so EVALSHA calls can be told apart."""
    names = {}
    for entry in resources.files("jobqueue.backend").joinpath("_lua").iterdir():
        if entry.name.endswith(".lua"):
            names[hashlib.sha1(entry.read_text().encode()).hexdigest()] = entry.name.removesuffix(".lua")
    return names


@dataclass
class ClientCounts:
    """Commands this process sent (by name; EVALSHA by script) and socket writes (round trips)."""

    commands: Counter[str] = field(default_factory=Counter)
    writes: int = 0


def _name(args: tuple[Any, ...], scripts: dict[str, str]) -> str:
    first = args[0].decode() if isinstance(args[0], bytes) else str(args[0])
    name = first.split()[0].upper()
    if name == "EVALSHA" and len(args) > 1:
        sha = args[1].decode() if isinstance(args[1], bytes) else str(args[1])
        return f"EVALSHA {scripts.get(sha, sha[:8])}"
    return name


@contextmanager
def client_counting() -> Iterator[ClientCounts]:
    """Count every command and write of redis-py's asyncio connections in this process."""
    counts, scripts = ClientCounts(), script_names()
    pack, send = Connection.pack_command, Connection.send_packed_command

    def counting_pack(self: Connection, *args: Any) -> Any:
        counts.commands[_name(args, scripts)] += 1
        return pack(self, *args)

    async def counting_send(self: Connection, command: Any, check_health: bool = True) -> None:
        counts.writes += 1
        await send(self, command, check_health)

    def counting_hiredis_pack(args: tuple[Any, ...]) -> bytes:
        counts.commands[_name(args, scripts)] += 1
        return hiredis_pack(args)

    # A worker's connections pack with hiredis (jobqueue.backend._pool), the rest with redis-py's packer.
    hiredis_pack = _pool._hiredis_pack
    Connection.pack_command = counting_pack  # type: ignore[method-assign]
    Connection.send_packed_command = counting_send  # type: ignore[method-assign]
    _pool._hiredis_pack = counting_hiredis_pack
    try:
        yield counts
    finally:
        Connection.pack_command = pack  # type: ignore[method-assign]
        Connection.send_packed_command = send  # type: ignore[method-assign]
        _pool._hiredis_pack = hiredis_pack


@dataclass
class ServerDelta:
    """INFO deltas over a step: calls and microseconds per command, and the server's CPU seconds.

    Server-wide: commands run inside scripts are included, and so is any other client's work.
    """

    calls: Counter[str]
    usec: Counter[str]
    cpu_s: float


async def _server_snapshot(admin: Admin) -> tuple[Counter[str], Counter[str], float]:
    stats = await admin.client.info("commandstats")
    cpu = await admin.client.info("cpu")
    calls, usec = Counter[str](), Counter[str]()
    for name, v in stats.items():
        calls[name.removeprefix("cmdstat_")] = int(v["calls"])
        usec[name.removeprefix("cmdstat_")] = int(v["usec"])
    return calls, usec, float(cpu["used_cpu_sys"]) + float(cpu["used_cpu_user"])


class Meter:
    """Wall time, this process's CPU time and the server's INFO deltas of one step."""

    def __init__(self, admin: Admin) -> None:
        self.admin = admin
        self.wall_s = self.cpu_s = 0.0
        self.server: ServerDelta | None = None

    async def __aenter__(self) -> Meter:
        self._before = await _server_snapshot(self.admin)
        self._wall, self._cpu = time.perf_counter(), time.process_time()
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.wall_s = time.perf_counter() - self._wall
        self.cpu_s = time.process_time() - self._cpu
        calls, usec, cpu = await _server_snapshot(self.admin)
        b_calls, b_usec, b_cpu = self._before
        self.server = ServerDelta(calls - b_calls, usec - b_usec, cpu - b_cpu)
