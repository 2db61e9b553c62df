"""Loopback stand-ins for the services the workers call, shipped so they run outside the tests too.

``FakeOpenAI`` speaks the OpenAI wire format (embeddings and chat completions, with 429/5xx
injection); ``jobqueue dev --fake-llm`` serves it with ``catalogue_responder``'s plausible
answers, so a new checkout runs every job without a key. ``WebhookReceiver`` accepts the signed
reminder webhooks.
"""

from workers.testing.catalogue_responder import catalogue_responder
from workers.testing.fake_openai import ChatReply, FakeOpenAI
from workers.testing.webhook_receiver import Delivery, WebhookReceiver

__all__ = ["ChatReply", "Delivery", "FakeOpenAI", "WebhookReceiver", "catalogue_responder"]
