"""The documented path of the notifier, kept for existing imports; it lives in
``workers.providers.notifier``."""

from workers.providers.notifier import (
    Notification,
    NotificationReceipt,
    Notifier,
    WebhookNotifier,
    notifier_from_settings,
    verify_signature,
)

__all__ = [
    "Notification",
    "NotificationReceipt",
    "Notifier",
    "WebhookNotifier",
    "notifier_from_settings",
    "verify_signature",
]
