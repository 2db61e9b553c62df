"""A loopback receiver for the reminder webhooks, for ``jobqueue dev`` and tests (stdlib only).

It checks each delivery's ``X-Jobqueue-Signature`` and ``X-Jobqueue-Timestamp`` with the shared
secret (``workers.providers.notifier.verify_signature``: 401 when they do not match or are stale), answers
200 with a message id, keeps the deliveries and hands each verified one to ``on_delivery``.
One path per channel: ``/push``, ``/email``, ``/sms``::

    with WebhookReceiver(secret="whsec-dev", on_delivery=print) as receiver:
        os.environ["REMINDER_WEBHOOK_URL_PUSH"] = receiver.url_for("PUSH")
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from typing import Any

from workers.providers.notifier import (
    IDEMPOTENCY_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    URL_VARIABLES,
    verify_signature,
)
from workers.testing._loopback import LoopbackServer


@dataclass(frozen=True)
class Delivery:
    """One reminder the receiver accepted (the signature matched)."""

    channel: str
    idempotency_key: str | None
    body: dict[str, Any]
    duplicate: bool  # an earlier delivery had the same Idempotency-Key


class WebhookReceiver(LoopbackServer):
    """A threaded HTTP server on 127.0.0.1 (port 0: a free one) that accepts signed reminders."""

    def __init__(
        self,
        *,
        secret: str,
        on_delivery: Callable[[Delivery], None] | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.secret = secret
        self.on_delivery = on_delivery
        self.deliveries: list[Delivery] = []
        self.rejected = 0
        self._lock = threading.Lock()
        super().__init__((host, port))

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        return type("_BoundHandler", (_Handler,), {"receiver": self})

    @property
    def base_url(self) -> str:
        return self._origin("receiver")

    def url_for(self, channel: str) -> str:
        """The URL for ``channel`` (``PUSH``, ``EMAIL`` or ``SMS``)."""
        if channel not in URL_VARIABLES:
            raise ValueError(f"unknown channel {channel!r}")
        return f"{self.base_url}/{channel.lower()}"

    def _accept(self, path: str, headers: dict[str, str], raw: bytes) -> tuple[int, dict[str, Any]]:
        channel = path.strip("/").upper()
        if channel not in URL_VARIABLES:
            return 404, {"error": f"no channel at {path}"}
        signature, timestamp = headers.get(SIGNATURE_HEADER.lower()), headers.get(TIMESTAMP_HEADER.lower())
        if not verify_signature(raw, self.secret, signature, timestamp):
            with self._lock:
                self.rejected += 1
            return 401, {"error": "bad or stale signature (REMINDER_WEBHOOK_SECRET)"}
        try:
            body = json.loads(raw)
        except ValueError:
            return 400, {"error": "body is not JSON"}
        key = headers.get(IDEMPOTENCY_HEADER.lower())
        with self._lock:
            duplicate = key is not None and any(d.idempotency_key == key for d in self.deliveries)
            delivery = Delivery(channel, key, body, duplicate)
            self.deliveries.append(delivery)
            number = len(self.deliveries)
        if self.on_delivery is not None:
            self.on_delivery(delivery)
        return 200, {"message_id": f"dev-{number}"}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    receiver: WebhookReceiver

    def do_POST(self) -> None:
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        headers = {k.lower(): v for k, v in self.headers.items()}
        status, payload = self.receiver._accept(self.path.split("?", 1)[0], headers, raw)
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass
