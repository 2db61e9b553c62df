"""The documented path of the LLM provider, kept for existing imports; it lives in ``workers.providers.llm``."""

from workers.providers.llm import (
    ChatProvider,
    EmbeddingProvider,
    InvalidInputError,
    LLMSettings,
    OpenAIProvider,
    RateLimitedError,
    provider_from_settings,
    record_usage,
)

__all__ = [
    "ChatProvider",
    "EmbeddingProvider",
    "InvalidInputError",
    "LLMSettings",
    "OpenAIProvider",
    "RateLimitedError",
    "provider_from_settings",
    "record_usage",
]
