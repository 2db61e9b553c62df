"""The shipped webhook receiver accepts what WebhookNotifier signs, and refuses a wrong signature."""

from datetime import UTC, datetime

import pytest

from jobqueue.errors import PermanentJobError
from workers.providers.notifier import Notification, WebhookNotifier
from workers.testing import WebhookReceiver


def _notification(schedule_id="schedule-1", channel="EMAIL"):
    return Notification(
        schedule_id=schedule_id,
        user_id="user-1",
        channel=channel,
        title="Birthday reminder",
        body="Tomorrow!",
        scheduled_for=datetime(2025, 12, 22, 9, tzinfo=UTC),
    )


async def test_signed_reminders_are_received_and_repeats_are_marked():
    seen = []
    with WebhookReceiver(secret="whsec-right", on_delivery=seen.append) as receiver:
        notifier = WebhookNotifier({"EMAIL": receiver.url_for("EMAIL")}, "whsec-right")
        try:
            first = await notifier.send(_notification())
            again = await notifier.send(_notification())
        finally:
            await notifier.aclose()
    assert (first.status_code, first.message_id, again.message_id) == (200, "dev-1", "dev-2")
    assert [(d.channel, d.idempotency_key, d.duplicate) for d in seen] == [
        ("EMAIL", "schedule-1", False),
        ("EMAIL", "schedule-1", True),
    ]
    assert seen[0].body["title"] == "Birthday reminder"
    assert receiver.deliveries == seen


async def test_a_wrong_secret_is_refused_with_401():
    with WebhookReceiver(secret="whsec-right") as receiver:
        notifier = WebhookNotifier({"SMS": receiver.url_for("SMS")}, "whsec-wrong")
        try:
            with pytest.raises(PermanentJobError, match="401"):
                await notifier.send(_notification(channel="SMS"))
        finally:
            await notifier.aclose()
    assert receiver.deliveries == [] and receiver.rejected == 1


def test_unknown_channel_has_no_url():
    with WebhookReceiver(secret="s") as receiver, pytest.raises(ValueError, match="unknown channel"):
        receiver.url_for("FAX")
