"""The lifecycle both loopback stand-ins share: a threaded HTTP server on a background thread."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Self


class LoopbackServer:
    """``start()``/``stop()`` (and ``with``) around a ``ThreadingHTTPServer`` in its own thread.

    A subclass sets ``server_class`` when it needs its own, and overrides ``_before_close`` to
    wake handler threads that would otherwise keep ``stop()`` waiting.
    """

    server_class: type[ThreadingHTTPServer] = ThreadingHTTPServer

    def __init__(self, address: tuple[str, int]) -> None:
        self._address = address
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        raise NotImplementedError

    def _before_close(self) -> None:
        """Called between the server's shutdown and its close."""

    def start(self) -> Self:
        self._server = self.server_class(self._address, self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is None:
            return
        self._server.shutdown()
        self._before_close()
        self._server.server_close()
        assert self._thread is not None
        self._thread.join(timeout=5)
        self._server = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _origin(self, what: str) -> str:
        assert self._server is not None, f"start() the {what} first"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"
