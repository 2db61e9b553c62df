"""Loopback stand-ins for the services the workers call, shipped so they run outside the tests too.

``FakeOpenAI`` speaks the OpenAI wire format (embeddings and chat completions, with 429/5xx
injection); ``jobqueue dev --fake-llm`` serves it so a new checkout runs every job without a key.
"""

from workers.testing.fake_openai import ChatReply, FakeOpenAI

__all__ = ["ChatReply", "FakeOpenAI"]
