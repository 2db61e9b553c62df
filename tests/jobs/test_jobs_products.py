"""Product embedding and enrichment jobs, end to end: real worker, SQLite, the OpenAI wire format."""

import json

import pytest

import jobqueue
from jobqueue import JobFailedError
from tests.support.fixtures import DIMS
from tests.support.workers import progress_steps, run_burst
from workers.jobs.products import canonical_text, text_hash
from workers.settings import embedding_settings, enrichment_settings
from workers.testing.fake_openai import ChatReply, FakeOpenAI

ENRICHMENT = {
    "summary": "A hand-thrown mug for slow mornings.",
    "tags": ["mug", "ceramic"],
    "occasions": ["birthday"],
    "recipients": ["friend"],
    "style": "rustic",
}


async def _seed(store, pid="p1", **fields):
    values = {"name": "Stoneware mug", "price": 1800, "category": "kitchen", "description": "Glazed."} | fields
    return await store.upsert_product(pid, **values)


async def test_embedding_stores_vector_hash_and_model(store, fake_openai):
    product = await _seed(store)
    handle = await jobqueue.enqueue_product_embedding("p1", triggered_by="product.created")
    await run_burst(embedding_settings())
    result = await handle.result(timeout=5)
    digest = text_hash(canonical_text(product))
    assert (result.status, result.text_hash, result.model, result.dims) == ("processed", digest, "embed-test", DIMS)
    stored = await store.get_product("p1")
    assert stored.embedding == pytest.approx(FakeOpenAI.vector_for(canonical_text(product), DIMS))
    assert (stored.text_hash, stored.embedding_model) == (digest, "embed-test")
    (request,) = fake_openai.requests_to("/v1/embeddings")
    assert request.body["model"] == "embed-test" and request.body["input"] == [canonical_text(product)]


async def test_embedding_is_skipped_when_the_text_is_unchanged(store, fake_openai):
    await _seed(store)
    await jobqueue.enqueue_product_embedding("p1")
    await run_burst(embedding_settings())
    again = await jobqueue.enqueue_product_embedding("p1")
    await run_burst(embedding_settings())
    result = await again.result(timeout=5)
    assert result.status == "skipped" and "unchanged" in result.reason
    assert len(fake_openai.requests_to("/v1/embeddings")) == 1


async def test_embedding_is_skipped_when_previous_text_hash_matches(store, fake_openai):
    product = await _seed(store)
    digest = text_hash(canonical_text(product))
    handle = await jobqueue.enqueue_product_embedding("p1", previous_text_hash=digest)
    await run_burst(embedding_settings())
    assert (await handle.result(timeout=5)).reason == "text unchanged (previous_text_hash)"
    assert fake_openai.requests_to("/v1/embeddings") == []


async def test_embedding_of_an_edited_product_runs_again(store, fake_openai):
    await _seed(store)
    await jobqueue.enqueue_product_embedding("p1")
    await run_burst(embedding_settings())
    await _seed(store, description="Now with a gold rim.")
    handle = await jobqueue.enqueue_product_embedding("p1")
    await run_burst(embedding_settings())
    assert (await handle.result(timeout=5)).status == "processed"
    assert len(fake_openai.requests_to("/v1/embeddings")) == 2


async def test_missing_product_fails_at_once(store, fake_openai):
    handle = await jobqueue.enqueue_product_embedding("ghost")
    await run_burst(embedding_settings())
    with pytest.raises(JobFailedError, match="EntityNotFoundError: product 'ghost' does not exist") as info:
        await handle.result(timeout=5)
    assert info.value.attempts == 1
    assert fake_openai.requests == []


async def test_429_with_retry_after_and_500_are_retried_then_succeed(store, fake_openai):
    await _seed(store)
    fake_openai.fail_next(status=429, headers={"Retry-After": "1"}, path="/v1/embeddings")
    fake_openai.fail_next(status=500, path="/v1/embeddings")
    handle = await jobqueue.enqueue_product_embedding("p1")
    await run_burst(embedding_settings())
    assert (await handle.result(timeout=5)).status == "processed"
    first, second, third = fake_openai.requests_to("/v1/embeddings")
    assert second.at - first.at >= 1.0  # Retry-After honoured
    assert third.at - second.at >= 0.2  # backoff after attempt 2: 0.1 * 2**1
    info = await jobqueue.product_embedding_queue.get_job(handle.job_id)
    assert info.attempts_made == 3


async def test_missing_llm_configuration_fails_the_job_naming_the_variable(store, no_llm):
    await _seed(store)
    handle = await jobqueue.enqueue_product_embedding("p1")
    await run_burst(embedding_settings())
    with pytest.raises(JobFailedError, match="LLM_API_KEY") as info:
        await handle.result(timeout=5)
    assert info.value.attempts == 1


async def test_enrichment_stores_validated_output_with_versions(store, fake_openai):
    fake_openai.responder = lambda request: json.dumps(ENRICHMENT)
    await _seed(store)
    handle = await jobqueue.enqueue_product_enrichment("p1", prompt_version="v2", current_enrichment_version=0)
    await run_burst(enrichment_settings())
    result = await handle.result(timeout=5)
    assert (result.status, result.enrichment_version, result.prompt_version) == ("processed", 1, "v2")
    stored = await store.get_product("p1")
    assert stored.enrichment == ENRICHMENT and stored.enrichment_version == 1 and stored.prompt_version == "v2"
    (request,) = fake_openai.requests_to("/v1/chat/completions")
    assert request.body["model"] == "gpt-test"
    assert request.body["response_format"]["json_schema"]["name"] == "product_enrichment"
    steps = await progress_steps(jobqueue.product_enrichment_queue, handle.job_id)
    assert steps == ["enriching", "storing", "done"]
    assert (await jobqueue.product_enrichment_queue.get_job(handle.job_id)).progress["percent"] == 100


async def test_enrichment_is_skipped_when_the_stored_version_is_current(store, fake_openai):
    await _seed(store, enrichment=ENRICHMENT, enrichment_version=1, prompt_version="v2")
    handle = await jobqueue.enqueue_product_enrichment("p1", prompt_version="v2")
    await run_burst(enrichment_settings())
    result = await handle.result(timeout=5)
    assert result.status == "skipped" and "is current" in result.reason
    assert fake_openai.requests == []


async def test_malformed_llm_output_fails_clearly_without_retries(store, fake_openai):
    fake_openai.responder = lambda request: ChatReply(content='{"summary": "no other fields"')
    await _seed(store)
    handle = await jobqueue.enqueue_product_enrichment("p1")
    await run_burst(enrichment_settings())
    with pytest.raises(JobFailedError, match="does not match") as info:
        await handle.result(timeout=5)
    assert info.value.attempts == 1
    assert (await store.get_product("p1")).enrichment is None
