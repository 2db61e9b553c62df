"""The Redis ``jobqueue dev`` runs on: the one at ``REDIS_URL``, or an embedded Valkey started there.

The embedded server is started through ``python -m jobqueue.embedded`` in a session of its own: a
Ctrl-C in the terminal reaches the workers (which hand their running jobs back through Redis) but
not the server, which ``stop()`` ends once the workers are gone. If ``jobqueue dev`` dies, the
server sees its standard input close and stops too.
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import IO
from urllib.parse import urlsplit

import redis

from jobqueue.backend import _sentinel
from jobqueue.embedded import LOOPBACK_HOSTS, port_is_free, redis_answers
from jobqueue.errors import ConfigurationError
from jobqueue.settings import redact_url

DEFAULT_REDIS_PORT = 6379
STOP_TIMEOUT_S = 15.0


@dataclass
class DevRedis:
    """Where the workers find Redis, and the embedded server's process when one was started."""

    url: str
    description: str
    process: subprocess.Popen[str] | None = None

    def stop(self) -> None:
        """Stop the embedded server (if one was started); it writes its append-only file first."""
        proc, self.process = self.process, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        finally:
            stdin: IO[str] | None = proc.stdin
            if stdin is not None:
                stdin.close()
            if proc.stdout is not None:
                proc.stdout.close()


def _where_data_lives(url: str) -> str:
    client = _sentinel.sync_client(url, timeout=2, decode_responses=True)
    try:
        config = client.config_get("dir") | client.config_get("appendonly")
    except (redis.RedisError, OSError):
        return "; it does not say where it keeps its data"  # CONFIG is often disabled on managed servers
    finally:
        _sentinel.close_sync_client(client)
    if config.get("appendonly") == "yes":
        return f"; data in {config.get('dir')}, append-only file on"
    return f"; data in {config.get('dir')}, append-only file OFF: jobs queued in memory are lost if it restarts"


def start_dev_redis(url: str, data_dir: Path) -> DevRedis:
    """The Redis at ``url`` if it answers; else an embedded Valkey at that address, data in ``data_dir``.

    Raises ``ConfigurationError`` (one line, naming the password-free URL) when nothing answers and
    no server can be started there: not a plain ``redis://`` URL on this machine, a password in it,
    or a port that something else holds.
    """
    shown = redact_url(url)
    if redis_answers(url):
        return DevRedis(url, f"{shown} (a server that was already running{_where_data_lives(url)})")
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.scheme != "redis" or host not in LOOPBACK_HOSTS:
        raise ConfigurationError(
            f"nothing answers at {shown}, and an embedded Valkey can only be started for a redis:// URL on "
            "localhost: start that server or point REDIS_URL at one that runs"
        )
    if parts.password:
        raise ConfigurationError(
            f"nothing answers at {shown}; an embedded Valkey has no password: start that server, "
            "or drop the password from REDIS_URL"
        )
    port = parts.port or DEFAULT_REDIS_PORT
    if not port_is_free(host, port):
        raise ConfigurationError(
            f"nothing that speaks Redis answers at {shown}, but port {port} is taken: "
            "stop what listens there or set REDIS_URL to another port"
        )
    data_dir = data_dir.resolve()
    command = [sys.executable, "-m", "jobqueue.embedded", "--host", host, "--port", str(port)]
    command += ["--data-dir", str(data_dir), "--appendonly"]
    proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, start_new_session=True)
    assert proc.stdout is not None
    # One line, always: "ready <port>" or "error: ...", or nothing if it crashed (EOF).
    line = proc.stdout.readline().strip()
    if not line.startswith("ready"):
        proc.kill()
        proc.wait()
        detail = line.removeprefix("error: ") or f"exit code {proc.returncode}"
        raise ConfigurationError(f"could not start an embedded Valkey at {shown}: {detail}")
    description = f"{shown} (embedded Valkey started there; data in {data_dir}, append-only file on)"
    return DevRedis(url, description, proc)
