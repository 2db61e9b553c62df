"""Same text, one call: identical canonical texts share one embedding through the Redis cache, and
nothing that changes a vector (provider, model, dimensions, text) can read another's entry."""

from __future__ import annotations

import struct

import pytest
from prometheus_client import REGISTRY

import jobqueue
from tests.support.fixtures import DIMS
from tests.support.workers import run_burst
from workers.jobs.products import canonical_text
from workers.providers.batching import EmbeddingBatcher
from workers.providers.embedcache import CACHE_KEY_PREFIX, EmbeddingCache, cache_key, pack, unpack
from workers.providers.llm import OpenAIProvider
from workers.settings import embedding_settings
from workers.testing.fake_openai import FakeOpenAI

EMBEDDINGS = "/v1/embeddings"


def test_a_float32_vector_packs_exactly_and_others_fall_back_to_float64() -> None:
    vector = FakeOpenAI.vector_for("scarf", 16)
    raw = pack(vector)
    assert raw[:1] == b"f" and len(raw) == 1 + 4 * 16
    assert unpack(raw, 16) == vector
    precise = [0.1, 0.2, 0.3]  # not representable in float32
    assert unpack(pack(precise), 3) == precise


@pytest.mark.parametrize("raw", [b"", b"f", b"f\x00\x00\x00", b"x" + struct.pack("<4f", 1, 2, 3, 4), b"f\x00" * 3])
def test_a_stored_value_that_is_not_a_vector_of_the_right_length_is_a_miss(raw: bytes) -> None:
    assert unpack(raw, 4) is None


def test_the_key_changes_with_everything_that_changes_the_vector() -> None:
    base = ("http://provider/v1", "text-embedding-3-small", 256, 256, "red scarf")
    keys = {
        cache_key(*base),
        cache_key("http://other/v1", *base[1:]),
        cache_key(base[0], "text-embedding-3-large", *base[2:]),
        cache_key(*base[:2], None, 256, "red scarf"),
        cache_key(*base[:2], 512, 512, "red scarf"),
        cache_key(*base[:4], "red scarf "),
    }
    assert len(keys) == 6
    assert all(k.startswith(CACHE_KEY_PREFIX) and len(k) == len(CACHE_KEY_PREFIX) + 64 for k in keys)
    # Parts are length-prefixed: moving a character from one part to the next is another key.
    assert cache_key("a", "bc", 1, 1, "t") != cache_key("ab", "c", 1, 1, "t")


def hits_and_misses(queue: str, model: str) -> tuple[float, float]:
    labels = {"queue": queue, "model": model}
    return (
        REGISTRY.get_sample_value("jobqueue_llm_cache_hits_total", labels) or 0.0,
        REGISTRY.get_sample_value("jobqueue_llm_cache_misses_total", labels) or 0.0,
    )


async def test_duplicate_listings_share_one_embedding_within_a_batch_and_across_runs(store, fake_openai, monkeypatch):
    monkeypatch.setenv("JOBQUEUE_PRODUCT_EMBEDDING_BATCH_WAIT", "0.3")
    same = {"name": "Wool scarf", "price": 2500, "category": "fashion", "description": "Soft and warm."}
    for pid in ("listing-a", "listing-b", "variant-c"):
        await store.upsert_product(pid, **same)
    other = await store.upsert_product("mug", name="Mug", price=900, description="Glazed.")
    text = canonical_text(await store.get_product("listing-a"))
    before = hits_and_misses("product-embedding", "embed-test")

    await jobqueue.enqueue_product_embeddings(["listing-a", "listing-b", "mug"])
    await run_burst(embedding_settings())
    (request,) = fake_openai.requests_to(EMBEDDINGS)
    assert sorted(request.body["input"]) == sorted([text, canonical_text(other)])  # the duplicate sent once

    handle = await jobqueue.enqueue_product_embedding("variant-c")  # later, another worker run
    await run_burst(embedding_settings())
    result = await handle.result(timeout=5)
    assert len(fake_openai.requests_to(EMBEDDINGS)) == 1
    assert result.status == "processed" and result.usage is not None
    assert (result.usage.cached, result.usage.requests, result.usage.input_tokens) == (True, 0.0, 0)
    expected = FakeOpenAI.vector_for(text, DIMS)
    for pid in ("listing-a", "listing-b", "variant-c"):
        assert (await store.get_product(pid)).embedding == pytest.approx(expected)
    hits, misses = hits_and_misses("product-embedding", "embed-test")
    assert (hits - before[0], misses - before[1]) == (1, 3)


async def embed_through_cache(provider: OpenAIProvider, redis_client, text: str) -> list[float]:
    cache = EmbeddingCache(
        redis_client,
        identity=provider.identity,
        model=provider.embedding_model,
        sent_dimensions=provider.sent_dimensions,
        dims=provider.dims,
        ttl=60,
    )
    batcher = EmbeddingBatcher(provider, batch_wait=0, cache=cache)
    try:
        return await batcher.embed(text)
    finally:
        await batcher.aclose()
        await provider.aclose()


def make_provider(fake: FakeOpenAI, model: str = "e", dims: int = DIMS) -> OpenAIProvider:
    return OpenAIProvider(api_key="k", base_url=fake.base_url, model="m", embedding_model=model, dims=dims)


async def test_another_model_or_dimension_misses_and_gets_its_own_vector(fake_openai, redis_client):
    first = await embed_through_cache(make_provider(fake_openai), redis_client, "red scarf")
    again = await embed_through_cache(make_provider(fake_openai), redis_client, "red scarf")
    assert again == first and len(fake_openai.requests_to(EMBEDDINGS)) == 1

    other_model = await embed_through_cache(make_provider(fake_openai, model="e2"), redis_client, "red scarf")
    assert len(fake_openai.requests_to(EMBEDDINGS)) == 2 and other_model == first  # the fake ignores the model
    smaller = await embed_through_cache(make_provider(fake_openai, dims=4), redis_client, "red scarf")
    assert len(fake_openai.requests_to(EMBEDDINGS)) == 3
    assert smaller == FakeOpenAI.vector_for("red scarf", 4)
    assert len(await redis_client.keys(CACHE_KEY_PREFIX + "*")) == 3


async def test_entries_expire_after_the_configured_ttl(fake_openai, redis_client):
    provider = make_provider(fake_openai)
    cache = EmbeddingCache(
        redis_client, identity=provider.identity, model="e", sent_dimensions=DIMS, dims=DIMS, ttl=120
    )
    await cache.put_many([("t", FakeOpenAI.vector_for("t", DIMS))])
    await provider.aclose()
    assert 0 < await redis_client.ttl(cache.key("t")) <= 120
    assert await cache.get_many(["t", "u"]) == [FakeOpenAI.vector_for("t", DIMS), None]
