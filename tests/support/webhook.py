"""A loopback webhook receiver: records what it is sent, answers what the test routes."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from workers.providers.notifier import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify_signature

RELEASE_TIMEOUT_S = 10.0


@dataclass
class Captured:
    path: str
    headers: Message
    body: bytes
    verified: bool | None = None  # None when the receiver has no secret


@dataclass
class Receiver:
    """What the loopback server answers per path, and what it was sent.

    ``/hang`` holds every answer until ``release`` is set (or 10 s pass); ``hold_next(path, n)``
    holds only the next ``n`` requests to ``path``. With a ``secret`` it checks every request as a
    real receiver does (``verify_signature`` against its ``clock``) and answers 401 to a stale or
    forged one.
    """

    base_url: str = ""
    routes: dict[str, tuple[int, dict[str, str], bytes]] = field(default_factory=dict)
    requests: list[Captured] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)
    holds: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    secret: str | None = None
    clock: Callable[[], float] = time.time

    def route(self, path: str, status: int, headers: dict[str, str] | None = None, body: bytes = b"") -> str:
        self.routes[path] = (status, headers or {}, body)
        return self.base_url + path

    def hold_next(self, path: str, times: int = 1) -> None:
        with self.lock:
            self.holds[path] = times

    def _should_hold(self, path: str) -> bool:
        with self.lock:
            if self.holds.get(path, 0) > 0:
                self.holds[path] -= 1
                return True
        return path == "/hang"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        receiver: Receiver = self.server.receiver  # type: ignore[attr-defined]
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        verified = None
        if receiver.secret is not None:
            signature, timestamp = self.headers.get(SIGNATURE_HEADER), self.headers.get(TIMESTAMP_HEADER)
            verified = verify_signature(body, receiver.secret, signature, timestamp, now=receiver.clock())
        receiver.requests.append(Captured(self.path, self.headers, body, verified))
        if receiver._should_hold(self.path):
            # Holds the answer so the client times out or is killed first.
            receiver.release.wait(RELEASE_TIMEOUT_S)
        status, headers, payload = receiver.routes.get(self.path, (404, {}, b""))
        if verified is False:
            status, headers, payload = 401, {}, b"bad signature"
        try:
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    receiver = Receiver(base_url=f"http://127.0.0.1:{server.server_address[1]}")
    server.receiver = receiver  # type: ignore[attr-defined]
    # A short poll interval lets shutdown() return promptly at teardown.
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        receiver.release.set()
        server.shutdown()
        server.server_close()
        thread.join()
