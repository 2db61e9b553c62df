"""A worker's Redis connections, made cheaper per command for the worker's hot path.

redis-py's asyncio connections pack every command in Python and, each time one is taken from the
pool, probe it with a zero-timeout read, which costs an extra event-loop turn per command. In a
worker that is CPU-bound on its Redis calls (the batched embedding benchmark's), each of the two
cost about 7% of its throughput:

- commands are packed by hiredis (C), as redis-py's synchronous connections already do; anything
  hiredis does not take (a memoryview, an invalid type, a multi-word command name) goes to
  redis-py's own packer, which packs it or raises its ``DataError`` as before;
- the probe runs only for a connection that holds unread data or has seen its end, the cases it
  exists for. A connection the server closed unseen fails its next command with a connection
  error, which the workers' pool retries on a new connection (``jobqueue.backend._redis_settings``).

Without hiredis (it is a dependency of jobqueue) nothing changes.
"""

from __future__ import annotations

import codecs
from collections.abc import Callable
from typing import Any

from redis._parsers.hiredis import _AsyncHiredisParser

try:
    from hiredis import pack_command as _hiredis_pack
except ImportError:  # pragma: no cover - hiredis is a dependency
    _hiredis_pack = None


def tune_pool(connection_pool: Any) -> None:
    """Tune ``connection_pool``'s connections, those it holds and those it makes later."""
    if getattr(connection_pool, "_jobqueue_tuned", False):
        return
    connection_pool._jobqueue_tuned = True
    make_connection = connection_pool.make_connection

    def make_tuned_connection() -> Any:
        connection = make_connection()
        _tune(connection)
        return connection

    connection_pool.make_connection = make_tuned_connection
    for connection in [*connection_pool._available_connections, *connection_pool._in_use_connections]:
        _tune(connection)
    probe = connection_pool.ensure_connection

    async def ensure_connection(connection: Any) -> None:
        if not _clean(connection):
            await probe(connection)

    connection_pool.ensure_connection = ensure_connection


def _clean(connection: Any) -> bool:
    """Connected, nothing unread, no end seen: ready to send, without a read to prove it."""
    parser, stream = getattr(connection, "_parser", None), getattr(connection, "_reader", None)
    return (
        isinstance(parser, _AsyncHiredisParser)
        and connection.is_connected
        and parser._reader is not None
        and not parser._reader.has_data()
        and stream is not None
        and not stream._buffer
        and not stream.at_eof()
    )


def _tune(connection: Any) -> None:
    encoder = connection.encoder
    if _hiredis_pack is None or encoder.encoding_errors != "strict" or codecs.lookup(encoder.encoding).name != "utf-8":
        return  # hiredis writes text as UTF-8, strictly
    connection.pack_command = _packer(connection.pack_command)


def _packer(python_pack: Callable[..., list[bytes]]) -> Callable[..., list[bytes]]:
    def pack_command(*args: Any) -> list[bytes]:
        name = args[0]
        if isinstance(name, str) and " " not in name:
            try:
                return [_hiredis_pack(args)]
            except TypeError:
                pass
        return python_pack(*args)

    return pack_command
