"""Embeddings requests stay within the provider's per-request caps: 2,048 inputs and 300k tokens."""

from __future__ import annotations

import asyncio

import pytest

from tests.support.fixtures import DIMS
from workers.providers.batching import EmbeddingBatcher
from workers.providers.llm import (
    OPENAI_MAX_EMBEDDING_INPUTS,
    OPENAI_MAX_EMBEDDING_REQUEST_TOKENS,
    OpenAIProvider,
    estimate_tokens,
    request_chunks,
)
from workers.testing.fake_openai import FakeOpenAI

EMBEDDINGS = "/v1/embeddings"
# About 8,000 estimated tokens: just under a text-embedding-3 model's per-input limit.
BIG = "x" * 32_000


def test_chunks_hold_at_most_2048_inputs_in_order() -> None:
    texts = [f"t{i}" for i in range(5000)]
    chunks = request_chunks(texts, OPENAI_MAX_EMBEDDING_INPUTS, OPENAI_MAX_EMBEDDING_REQUEST_TOKENS)
    assert [len(c) for c in chunks] == [2048, 2048, 904]
    assert [t for c in chunks for t in c] == texts


def test_chunks_hold_at_most_300k_estimated_tokens() -> None:
    texts = [BIG + str(i) for i in range(80)]
    chunks = request_chunks(texts, OPENAI_MAX_EMBEDDING_INPUTS, OPENAI_MAX_EMBEDDING_REQUEST_TOKENS)
    assert all(sum(estimate_tokens(t) for t in c) <= OPENAI_MAX_EMBEDDING_REQUEST_TOKENS for c in chunks)
    assert [len(c) for c in chunks] == [37, 37, 6]


def test_a_single_text_over_the_request_cap_goes_alone() -> None:
    assert request_chunks(["a", "b" * 20, "c"], 2048, 3) == [["a"], ["b" * 20], ["c"]]


@pytest.fixture
async def provider(fake_openai):
    provider = OpenAIProvider(
        api_key="sk-test", base_url=fake_openai.base_url, model="m", embedding_model="e", dims=DIMS, timeout=30
    )
    yield provider
    await provider.aclose()


async def test_the_provider_splits_2049_texts_into_two_requests_and_keeps_their_order(provider, fake_openai):
    texts = [f"text {i}" for i in range(OPENAI_MAX_EMBEDDING_INPUTS + 1)]
    embedded = await provider.embed_counted(texts)
    sizes = [len(r.body["input"]) for r in fake_openai.requests_to(EMBEDDINGS)]
    assert sizes == [2048, 1]
    assert embedded.vectors[-1] == FakeOpenAI.vector_for(texts[-1], DIMS)
    assert embedded.vectors[0] == FakeOpenAI.vector_for(texts[0], DIMS)
    assert embedded.usage.requests == 2
    assert embedded.usage.input_tokens == 2 * len(texts)  # the server counts two words per text


async def test_a_batch_larger_than_the_provider_takes_is_capped_at_2048(provider):
    batcher = EmbeddingBatcher(provider, batch_size=5000)
    try:
        assert batcher.batch_size == OPENAI_MAX_EMBEDDING_INPUTS
    finally:
        await batcher.aclose()


async def test_the_batcher_flushes_before_a_request_would_pass_300k_tokens(provider, fake_openai):
    batcher = EmbeddingBatcher(provider, batch_size=64, batch_wait=0.2)
    texts = [BIG + str(i) for i in range(40)]
    try:
        vectors = await asyncio.gather(*(batcher.embed(t) for t in texts))
    finally:
        await batcher.aclose()
    requests = fake_openai.requests_to(EMBEDDINGS)
    assert [len(r.body["input"]) for r in requests] == [37, 3]
    for request in requests:
        assert sum(estimate_tokens(t) for t in request.body["input"]) <= OPENAI_MAX_EMBEDDING_REQUEST_TOKENS
    assert vectors[39] == FakeOpenAI.vector_for(texts[39], DIMS)
