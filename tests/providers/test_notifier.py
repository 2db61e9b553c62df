"""WebhookNotifier against a real HTTP server on the loopback interface."""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import pytest
from pydantic import ValidationError

from jobqueue.errors import ConfigurationError, PermanentJobError, RetryableJobError
from workers.providers._http import parse_retry_after
from workers.providers.notifier import (
    DEFAULT_SIGNATURE_TOLERANCE_S,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    Notification,
    NotifierSettings,
    WebhookNotifier,
    notifier_from_settings,
    verify_signature,
)

SECRET = "test-secret"


def _notification(channel: str = "PUSH", schedule_id: str = "sched-1") -> Notification:
    return Notification(
        schedule_id=schedule_id,
        user_id="user-1",
        channel=channel,
        title="Mum's birthday",
        body="In 3 days — pick a gift",
        data={"deeplink": "app://occasions/o1", "n": 3},
        occasion_id="o1",
        scheduled_for=datetime(2025, 12, 21, 9, 0, tzinfo=UTC),
    )


async def _send(receiver_url: str, notification: Notification | None = None, **options):
    notification = notification or _notification()
    notifier = WebhookNotifier({notification.channel: receiver_url}, SECRET, **options)
    try:
        return await notifier.send(notification)
    finally:
        await notifier.aclose()


async def test_send_posts_the_signed_notification_with_the_schedule_id_as_idempotency_key(receiver):
    url = receiver.route("/push", 202, {"Content-Type": "application/json"}, b'{"id": "msg-42"}')
    receipt = await _send(url)
    assert (receipt.status_code, receipt.message_id, receipt.schedule_id) == (202, "msg-42", "sched-1")
    [request] = receiver.requests
    assert json.loads(request.body) == _notification().model_dump(mode="json")
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["Idempotency-Key"] == "sched-1"
    signature, timestamp = request.headers["X-Jobqueue-Signature"], request.headers["X-Jobqueue-Timestamp"]
    assert timestamp.isdigit()
    # The documented construction, so a receiver in any language can check it.
    signed = timestamp.encode() + b"." + request.body
    assert signature == "sha256=" + hmac.new(SECRET.encode(), signed, hashlib.sha256).hexdigest()
    assert verify_signature(request.body, SECRET, signature, timestamp)
    assert not verify_signature(request.body, "other-secret", signature, timestamp)
    assert not verify_signature(request.body + b" ", SECRET, signature, timestamp)
    assert not verify_signature(request.body, SECRET, None, timestamp)
    assert not verify_signature(request.body, SECRET, signature, None)


def _signed(body: bytes, timestamp: int, secret: str = SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def test_verify_signature_refuses_a_timestamp_outside_the_tolerance_in_either_direction():
    body, sent = b'{"schedule_id":"s1"}', 1_766_307_600
    signature = _signed(body, sent)
    assert DEFAULT_SIGNATURE_TOLERANCE_S == 300
    for receiver_clock in (sent, sent + 300, sent - 300):
        assert verify_signature(body, SECRET, signature, str(sent), now=receiver_clock)
    for receiver_clock in (sent + 301, sent - 301, sent + 86_400):
        assert not verify_signature(body, SECRET, signature, str(sent), now=receiver_clock)
    assert verify_signature(body, SECRET, signature, str(sent), now=sent + 301, tolerance=600)


def test_verify_signature_refuses_a_changed_timestamp_a_body_only_signature_and_malformed_headers():
    body, sent = b'{"schedule_id":"s1"}', 1_766_307_600
    signature = _signed(body, sent)
    assert not verify_signature(body, SECRET, signature, str(sent + 1), now=sent)
    body_only = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    assert not verify_signature(body, SECRET, body_only, str(sent), now=sent)
    assert not verify_signature(body, SECRET, signature.removeprefix("sha256="), str(sent), now=sent)
    for timestamp in ("", " ", "abc", "-5", "1766307600.0", "1.7e9", "\u0661\u0662", "9" * 400):
        assert not verify_signature(body, SECRET, signature, timestamp, now=sent)
    assert verify_signature(body, SECRET, f" {signature} ", f" {sent} ", now=sent)


async def test_a_receiver_accepts_a_fresh_request_and_refuses_a_replay_or_a_changed_timestamp(receiver):
    receiver.secret = SECRET
    url = receiver.route("/push", 200)
    await _send(url)
    [fresh] = receiver.requests
    assert fresh.verified is True
    sent = int(fresh.headers[TIMESTAMP_HEADER])
    captured = {name: fresh.headers[name] for name in ("Content-Type", "Idempotency-Key", SIGNATURE_HEADER)}
    async with httpx.AsyncClient() as client:
        # The captured request sent again, as an attacker would, once the tolerance has passed.
        receiver.clock = lambda: sent + DEFAULT_SIGNATURE_TOLERANCE_S + 1
        replayed = await client.post(url, content=fresh.body, headers={**captured, TIMESTAMP_HEADER: str(sent)})
        # ... or at once with a newer timestamp, to pass the freshness check.
        receiver.clock = lambda: sent
        retimed = await client.post(url, content=fresh.body, headers={**captured, TIMESTAMP_HEADER: str(sent + 1)})
    assert (replayed.status_code, retimed.status_code) == (401, 401)
    assert [r.verified for r in receiver.requests] == [True, False, False]


async def test_a_receiver_with_another_secret_refuses_the_notification(receiver):
    receiver.secret = "another-secret"
    with pytest.raises(PermanentJobError, match="401"):
        await _send(receiver.route("/push", 200))
    assert [r.verified for r in receiver.requests] == [False]


async def test_a_resend_carries_the_same_body_and_key(receiver):
    url = receiver.route("/push", 200)
    await _send(url)
    await _send(url)
    first, second = receiver.requests
    assert first.body == second.body
    assert first.headers["Idempotency-Key"] == second.headers["Idempotency-Key"] == "sched-1"


async def test_message_id_is_read_from_the_response_header(receiver):
    url = receiver.route("/email", 200, {"X-Message-Id": "mail-7"})
    receipt = await _send(url, _notification(channel="EMAIL"))
    assert (receipt.channel, receipt.message_id) == ("EMAIL", "mail-7")
    assert receiver.requests[0].path == "/email"


async def test_each_channel_goes_to_its_own_url(receiver):
    urls = {"PUSH": receiver.route("/push", 200), "SMS": receiver.route("/sms", 200)}
    notifier = WebhookNotifier(urls, SECRET)
    try:
        await notifier.send(_notification(channel="SMS", schedule_id="a"))
        await notifier.send(_notification(channel="PUSH", schedule_id="b"))
    finally:
        await notifier.aclose()
    assert [(r.path, r.headers["Idempotency-Key"]) for r in receiver.requests] == [("/sms", "a"), ("/push", "b")]


async def test_429_with_retry_after_seconds_is_retryable_after_that_delay(receiver):
    url = receiver.route("/push", 429, {"Retry-After": "7"})
    with pytest.raises(RetryableJobError, match="429") as info:
        await _send(url)
    assert info.value.retry_after == 7.0


async def test_503_with_an_http_date_retry_after_is_retryable_after_that_delay(receiver):
    due = datetime.now(UTC) + timedelta(seconds=120)
    url = receiver.route("/push", 503, {"Retry-After": format_datetime(due, usegmt=True)})
    with pytest.raises(RetryableJobError, match="503") as info:
        await _send(url)
    assert 60 < info.value.retry_after <= 120


@pytest.mark.parametrize("status", [408, 409, 425, 500, 502])
async def test_transient_statuses_are_retryable(receiver, status):
    url = receiver.route("/push", status)
    with pytest.raises(RetryableJobError, match=str(status)) as info:
        await _send(url)
    assert info.value.retry_after is None


@pytest.mark.parametrize("status", [400, 401, 404, 422])
async def test_other_client_errors_are_permanent(receiver, status):
    url = receiver.route("/push", status)
    with pytest.raises(PermanentJobError, match=str(status)):
        await _send(url)


async def test_connection_refused_is_retryable():
    # A bound socket that never listens: connecting to its port is refused, and no one else gets it.
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        with pytest.raises(RetryableJobError, match="unreachable"):
            await _send(f"http://127.0.0.1:{closed.getsockname()[1]}/push")


async def test_a_receiver_that_does_not_answer_in_time_is_retryable(receiver):
    url = receiver.route("/hang", 200)
    with pytest.raises(RetryableJobError, match="unreachable"):
        await _send(url, timeout=0.2)


async def test_a_channel_without_url_names_the_variable_to_set(receiver):
    notifier = WebhookNotifier({"PUSH": receiver.route("/push", 200), "SMS": None}, SECRET)
    try:
        with pytest.raises(ConfigurationError, match="REMINDER_WEBHOOK_URL_SMS"):
            await notifier.send(_notification(channel="SMS"))
    finally:
        await notifier.aclose()
    assert receiver.requests == []


async def test_notifier_from_settings_reads_the_environment(receiver, monkeypatch):
    monkeypatch.setenv("REMINDER_WEBHOOK_URL_EMAIL", receiver.route("/email", 200))
    monkeypatch.setenv("REMINDER_WEBHOOK_SECRET", SECRET)
    monkeypatch.setenv("REMINDER_WEBHOOK_TIMEOUT", "2.5")
    assert NotifierSettings().timeout == 2.5
    notifier = notifier_from_settings()
    try:
        await notifier.send(_notification(channel="EMAIL"))
        with pytest.raises(ConfigurationError, match="REMINDER_WEBHOOK_URL_PUSH"):
            await notifier.send(_notification(channel="PUSH"))
    finally:
        await notifier.aclose()
    [request] = receiver.requests
    assert verify_signature(request.body, SECRET, request.headers[SIGNATURE_HEADER], request.headers[TIMESTAMP_HEADER])


def test_a_missing_secret_names_the_variable(monkeypatch):
    monkeypatch.delenv("REMINDER_WEBHOOK_SECRET", raising=False)
    with pytest.raises(ConfigurationError, match="REMINDER_WEBHOOK_SECRET"):
        notifier_from_settings()
    with pytest.raises(ConfigurationError, match="REMINDER_WEBHOOK_SECRET"):
        WebhookNotifier({"PUSH": "http://127.0.0.1/push"}, "")


async def test_aclose_is_safe_twice_and_leaves_a_given_client_open(receiver):
    async with httpx.AsyncClient() as client:
        notifier = WebhookNotifier({"PUSH": receiver.route("/push", 200)}, SECRET, client=client)
        await notifier.aclose()
        await notifier.aclose()
        assert not client.is_closed
    owned = WebhookNotifier({"PUSH": receiver.route("/push", 200)}, SECRET)
    await owned.aclose()
    await owned.aclose()


def test_notification_requires_an_aware_scheduled_for():
    with pytest.raises(ValidationError):
        Notification(schedule_id="s", user_id="u", channel="PUSH", title="t", body="b",
                     scheduled_for=datetime(2025, 12, 21, 9, 0))  # fmt: skip


def test_parse_retry_after():
    now = datetime(2025, 12, 21, 9, 0, tzinfo=UTC).timestamp()
    assert parse_retry_after({"Retry-After": "12"}, now=now) == 12.0
    assert parse_retry_after({"Retry-After": "Sun, 21 Dec 2025 09:01:30 GMT"}, now=now) == 90.0
    assert parse_retry_after({"Retry-After": "Sun, 21 Dec 2025 08:00:00 GMT"}, now=now) == 0.0
    assert parse_retry_after({"Retry-After": "-5"}, now=now) == 0.0
    assert parse_retry_after({"Retry-After": "soon"}, now=now) is None
    assert parse_retry_after(None) is None
