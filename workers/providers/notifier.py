"""How reminders leave the system: the ``Notifier`` protocol and a signed HTTP webhook transport."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from typing import Any, Final, Literal, Protocol
from urllib.parse import urlsplit

import httpx
from pydantic import AwareDatetime, BaseModel, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from jobqueue import tracing
from jobqueue.errors import ConfigurationError, PermanentJobError, RetryableJobError
from workers.providers._http import parse_retry_after

Channel = Literal["PUSH", "EMAIL", "SMS"]

DEFAULT_WEBHOOK_TIMEOUT_S: Final = 10.0
SIGNATURE_HEADER: Final = "X-Jobqueue-Signature"
TIMESTAMP_HEADER: Final = "X-Jobqueue-Timestamp"
# How far a request's timestamp may be from the receiver's clock before it is refused as a replay.
DEFAULT_SIGNATURE_TOLERANCE_S: Final = 300.0
_MAX_TIMESTAMP_DIGITS: Final = 12  # unix seconds until the year 33658; longer is refused, not parsed
IDEMPOTENCY_HEADER: Final = "Idempotency-Key"
URL_VARIABLES: Final[dict[str, str]] = {
    "PUSH": "REMINDER_WEBHOOK_URL_PUSH",
    "EMAIL": "REMINDER_WEBHOOK_URL_EMAIL",
    "SMS": "REMINDER_WEBHOOK_URL_SMS",
}
# The openai SDK's list of statuses worth retrying, plus 425 Too Early.
_RETRYABLE_STATUSES: Final = frozenset({408, 409, 425, 429})
_RETRY_AFTER_STATUSES: Final = frozenset({429, 503})
_MESSAGE_ID_HEADERS: Final = ("X-Message-Id", "Message-Id")
_MESSAGE_ID_FIELDS: Final = ("message_id", "messageId", "id")


class Notification(BaseModel):
    """One reminder to deliver; ``schedule_id`` is its idempotency key at the receiver."""

    schedule_id: str = Field(min_length=1)
    user_id: str = Field(min_length=1)
    channel: Channel
    title: str
    body: str
    data: dict[str, Any] = {}
    occasion_id: str | None = None
    scheduled_for: AwareDatetime


class NotificationReceipt(BaseModel):
    """The receiver's acknowledgement: its HTTP status and, when it gave one, its message id."""

    schedule_id: str
    channel: Channel
    status_code: int
    message_id: str | None = None


class Notifier(Protocol):
    """Delivers notifications; raises ``RetryableJobError`` or ``PermanentJobError`` on failure."""

    async def send(self, notification: Notification) -> NotificationReceipt: ...
    async def aclose(self) -> None: ...


def _sign(body: bytes, secret: str, timestamp: int) -> str:
    """The ``X-Jobqueue-Signature`` value: ``sha256=`` + hex HMAC-SHA256 of ``b"<timestamp>." + body``."""
    signed = str(timestamp).encode() + b"." + body
    return "sha256=" + hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()


def verify_signature(
    body: bytes,
    secret: str,
    signature: str | None,
    timestamp: str | None,
    *,
    tolerance: float = DEFAULT_SIGNATURE_TOLERANCE_S,
    now: float | None = None,
) -> bool:
    """True if a webhook request is authentic and fresh.

    ``signature`` and ``timestamp`` are the ``X-Jobqueue-Signature`` and ``X-Jobqueue-Timestamp``
    header values, ``body`` the exact request bytes. False when either header is missing or
    malformed, when the timestamp is more than ``tolerance`` seconds from ``now`` (default: this
    host's clock) in either direction, or when the signature is not that of ``timestamp.body`` under
    ``secret`` (compared in constant time). A captured request replayed later, or one whose
    timestamp was changed, is refused.
    """
    if not signature or not timestamp:
        return False
    timestamp = timestamp.strip()
    if not (timestamp.isascii() and timestamp.isdigit()) or len(timestamp) > _MAX_TIMESTAMP_DIGITS:
        return False
    current = time.time() if now is None else now
    if abs(current - int(timestamp)) > tolerance:
        return False
    expected = _sign(body, secret, int(timestamp))
    return hmac.compare_digest(expected.encode(), signature.strip().encode())


def _origin(url: str) -> str:
    # Webhook URLs often carry a token in the path or query: messages show only where they point.
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}" + (f":{parts.port}" if parts.port else "")


class WebhookNotifier:
    """POSTs each notification as JSON to its channel's URL, signed with HMAC-SHA256.

    Headers: ``Idempotency-Key`` (the schedule id), ``X-Jobqueue-Timestamp`` (unix seconds, when
    sent) and ``X-Jobqueue-Signature: sha256=<hex>``, the HMAC-SHA256 of ``<timestamp>.<body>``;
    receivers check both with ``verify_signature``. The body is the same bytes on every retry of a
    notification; each attempt carries its own timestamp and signature. 2xx is delivered;
    408/409/425/429/5xx and network errors raise ``RetryableJobError`` (``retry_after`` from
    ``Retry-After`` on 429/503); other statuses raise ``PermanentJobError``.
    """

    def __init__(
        self,
        urls: dict[str, str | None],
        secret: str,
        *,
        timeout: float = DEFAULT_WEBHOOK_TIMEOUT_S,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        if not secret:
            raise ConfigurationError("the webhook secret is empty: set REMINDER_WEBHOOK_SECRET")
        unknown = set(urls) - set(URL_VARIABLES)
        if unknown:
            raise ConfigurationError(f"unknown notification channel(s) {sorted(unknown)}")
        self._urls = {channel: url for channel, url in urls.items() if url}
        self._secret = secret
        self._timeout = timeout
        self._owns_client = client is None
        self._client = client if client is not None else httpx.AsyncClient(timeout=timeout)
        self._closed = False

    async def send(self, notification: Notification) -> NotificationReceipt:
        """Deliver ``notification`` to its channel's webhook and return the receipt."""
        url = self._urls.get(notification.channel)
        if url is None:
            variable = URL_VARIABLES[notification.channel]
            raise ConfigurationError(f"no webhook URL for {notification.channel}: set {variable}")
        # Serialized once: the signature covers exactly these bytes, and they do not vary by attempt.
        body = json.dumps(notification.model_dump(mode="json"), separators=(",", ":"), sort_keys=True).encode()
        timestamp = int(time.time())
        headers = {
            "Content-Type": "application/json",
            IDEMPOTENCY_HEADER: notification.schedule_id,
            SIGNATURE_HEADER: _sign(body, self._secret, timestamp),
            TIMESTAMP_HEADER: str(timestamp),
        }
        where = f"{notification.channel} webhook at {_origin(url)}"
        attributes = {
            "http.request.method": "POST",
            "server.address": urlsplit(url).hostname or "",
            "jobqueue.notification.channel": notification.channel,
        }
        with tracing.span("POST", kind="client", attributes=attributes) as span:
            try:
                response = await self._client.post(url, content=body, headers=headers, timeout=self._timeout)
            except httpx.TransportError as exc:
                # The request may have arrived: the retry carries the same Idempotency-Key.
                raise RetryableJobError(f"{where} unreachable: {exc!r}") from exc
            span.set_attribute("http.response.status_code", response.status_code)
        status = response.status_code
        if 200 <= status < 300:
            return NotificationReceipt(
                schedule_id=notification.schedule_id,
                channel=notification.channel,
                status_code=status,
                message_id=_message_id(response),
            )
        detail = f"{where} answered {status} {response.reason_phrase}"
        if status in _RETRYABLE_STATUSES or status >= 500:
            retry_after = None
            if status in _RETRY_AFTER_STATUSES:
                retry_after = parse_retry_after(response.headers)
            raise RetryableJobError(detail, retry_after=retry_after)
        raise PermanentJobError(detail)

    async def aclose(self) -> None:
        """Close the HTTP client if this notifier created it; safe to call twice."""
        if not self._closed:
            self._closed = True
            if self._owns_client:
                await self._client.aclose()


def _message_id(response: httpx.Response) -> str | None:
    for name in _MESSAGE_ID_HEADERS:
        if response.headers.get(name):
            return response.headers[name]
    if "json" not in response.headers.get("Content-Type", ""):
        return None
    try:
        payload = response.json()
    except ValueError:
        return None
    if isinstance(payload, dict):
        for name in _MESSAGE_ID_FIELDS:
            if isinstance(payload.get(name), str | int):
                return str(payload[name])
    return None


class NotifierSettings(BaseSettings):
    """The webhook settings, read from ``REMINDER_WEBHOOK_*`` when made (never at import)."""

    model_config = SettingsConfigDict(env_prefix="REMINDER_WEBHOOK_", extra="ignore")

    url_push: str | None = None
    url_email: str | None = None
    url_sms: str | None = None
    secret: SecretStr | None = None
    timeout: float = Field(DEFAULT_WEBHOOK_TIMEOUT_S, gt=0)


def notifier_from_settings(
    settings: NotifierSettings | None = None, *, client: httpx.AsyncClient | None = None
) -> WebhookNotifier:
    """A ``WebhookNotifier`` from the environment; ConfigurationError if the secret is unset."""
    settings = settings if settings is not None else NotifierSettings()
    if settings.secret is None or not settings.secret.get_secret_value():
        raise ConfigurationError("REMINDER_WEBHOOK_SECRET is not set")
    urls = {"PUSH": settings.url_push, "EMAIL": settings.url_email, "SMS": settings.url_sms}
    return WebhookNotifier(urls, settings.secret.get_secret_value(), timeout=settings.timeout, client=client)
