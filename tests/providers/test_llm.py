"""The openai-SDK providers against a loopback server speaking OpenAI's wire format."""

from __future__ import annotations

import json
import socket
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import openai
import pytest
from pydantic import BaseModel

from jobqueue.errors import ConfigurationError, PermanentJobError, RetryableJobError
from jobqueue.settings import Settings
from workers.providers._http import parse_retry_after
from workers.providers.llm import (
    PLACEHOLDER_API_KEY,
    OpenAIProvider,
    map_openai_error,
    provider_from_settings,
    strict_json_schema,
)
from workers.testing.fake_openai import ChatReply, FakeOpenAI

API_KEY = "sk-test-key"
DIMS = 8


class Enrichment(BaseModel):
    title: str
    tags: list[str]
    score: int


class Dimensions(BaseModel):
    width_cm: float
    height_cm: float


class DetailedEnrichment(BaseModel):
    summary: str
    occasion: str | None = None
    size: Dimensions


@pytest.fixture
def fake() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(dims=DIMS, api_key=API_KEY) as server:
        yield server


def make_provider(base_url: str, **overrides: Any) -> OpenAIProvider:
    options: dict[str, Any] = {
        "api_key": API_KEY,
        "base_url": base_url,
        "model": "gpt-test",
        "embedding_model": "text-embedding-3-small",
        "dims": DIMS,
        "timeout": 5.0,
    }
    return OpenAIProvider(**(options | overrides))


@pytest.fixture
async def provider(fake: FakeOpenAI) -> AsyncIterator[OpenAIProvider]:
    provider = make_provider(fake.base_url)
    yield provider
    await provider.aclose()


def settings(**values: Any) -> Settings:
    base: dict[str, Any] = {"llm_provider": "openai", "llm_api_key": None, "llm_base_url": None}
    return Settings(**(base | values))


# embeddings


async def test_embed_returns_one_vector_per_text_in_input_order(fake: FakeOpenAI) -> None:
    fake.reverse_embedding_data = True
    provider = make_provider(fake.base_url)
    try:
        vectors = await provider.embed(["red scarf", "blue mug", "green kite"])
    finally:
        await provider.aclose()

    assert vectors == [FakeOpenAI.vector_for(t, DIMS) for t in ("red scarf", "blue mug", "green kite")]
    [request] = fake.requests_to("/v1/embeddings")
    assert request.body["model"] == "text-embedding-3-small"
    assert request.body["dimensions"] == DIMS
    assert request.headers["authorization"] == f"Bearer {API_KEY}"


async def test_embed_of_no_texts_makes_no_request(fake: FakeOpenAI, provider: OpenAIProvider) -> None:
    assert await provider.embed([]) == []
    assert fake.requests == []


async def test_embed_omits_dimensions_for_a_model_that_rejects_it(fake: FakeOpenAI) -> None:
    provider = make_provider(fake.base_url, embedding_model="text-embedding-ada-002")
    try:
        await provider.embed(["a"])
    finally:
        await provider.aclose()
    assert "dimensions" not in fake.requests_to("/v1/embeddings")[0].body


async def test_embed_with_wrong_dimensions_fails_permanently_naming_embedding_dims(fake: FakeOpenAI) -> None:
    fake.honour_dimensions = False
    provider = make_provider(fake.base_url, dims=DIMS * 2)
    try:
        with pytest.raises(PermanentJobError, match="EMBEDDING_DIMS") as info:
            await provider.embed(["a"])
    finally:
        await provider.aclose()
    assert f"returned {DIMS} dimensions, expected {DIMS * 2}" in str(info.value)


# chat JSON


async def test_complete_json_parses_the_answer_into_the_schema(fake: FakeOpenAI, provider: OpenAIProvider) -> None:
    fake.responder = lambda request: json.dumps({"title": "Scarf", "tags": ["wool"], "score": 7})

    result = await provider.complete_json("system prompt", "user prompt", Enrichment, schema_name="enrichment")

    assert result == Enrichment(title="Scarf", tags=["wool"], score=7)
    [request] = fake.requests_to("/v1/chat/completions")
    assert request.body["model"] == "gpt-test"
    assert request.body["messages"] == [
        {"role": "system", "content": "system prompt"},
        {"role": "user", "content": "user prompt"},
    ]
    response_format = request.body["response_format"]
    assert response_format["type"] == "json_schema"
    assert response_format["json_schema"]["name"] == "enrichment"
    assert response_format["json_schema"]["strict"] is True


async def test_complete_json_sends_a_schema_strict_mode_accepts(provider: OpenAIProvider) -> None:
    # The fake answers 400 like OpenAI when an object is open or a property is optional.
    result = await provider.complete_json("s", "u", DetailedEnrichment, schema_name="detailed")

    assert result.size == Dimensions(width_cm=0.0, height_cm=0.0)


def test_strict_json_schema_closes_every_object_and_requires_every_property() -> None:
    schema = strict_json_schema(DetailedEnrichment)

    assert schema["additionalProperties"] is False
    assert sorted(schema["required"]) == ["occasion", "size", "summary"]
    nested = schema["$defs"]["Dimensions"]
    assert nested["additionalProperties"] is False


@pytest.mark.parametrize(
    ("content", "detail"),
    [("this is not json", "Invalid JSON"), ('{"title": "Scarf", "tags": "wool"}', "tags")],
)
async def test_complete_json_with_output_not_matching_the_schema_fails_permanently(
    fake: FakeOpenAI, provider: OpenAIProvider, content: str, detail: str
) -> None:
    fake.responder = lambda request: content

    with pytest.raises(PermanentJobError, match="does not match Enrichment") as info:
        await provider.complete_json("s", "u", Enrichment, schema_name="enrichment")

    assert detail in str(info.value)
    assert not isinstance(info.value, RetryableJobError)


@pytest.mark.parametrize(
    ("reply", "message"),
    [
        (ChatReply(refusal="I can't help with that."), "refused: I can't help with that."),
        (ChatReply(no_choices=True), "no choices"),
        (ChatReply(content='{"title": "Sc', finish_reason="length"), "cut off"),
        (ChatReply(content=""), "empty message"),
    ],
)
async def test_complete_json_without_a_usable_answer_fails_permanently(
    fake: FakeOpenAI, provider: OpenAIProvider, reply: ChatReply, message: str
) -> None:
    fake.responder = lambda request: reply

    with pytest.raises(PermanentJobError, match=message):
        await provider.complete_json("s", "u", Enrichment, schema_name="enrichment")


# provider errors through the SDK


async def test_429_is_retryable_after_the_retry_after_header(fake: FakeOpenAI, provider: OpenAIProvider) -> None:
    fake.fail_next(status=429, headers={"Retry-After": "2"})

    with pytest.raises(RetryableJobError) as info:
        await provider.embed(["a"])

    assert info.value.retry_after == 2
    assert isinstance(info.value.__cause__, openai.RateLimitError)
    assert len(fake.requests) == 1  # the SDK did not retry by itself


@pytest.mark.parametrize("status", [500, 503])
async def test_server_error_is_retryable_without_sdk_retries(
    fake: FakeOpenAI, provider: OpenAIProvider, status: int
) -> None:
    fake.fail_next(status=status, times=3)

    with pytest.raises(RetryableJobError) as info:
        await provider.complete_json("s", "u", Enrichment, schema_name="enrichment")

    assert info.value.retry_after is None
    assert len(fake.requests) == 1


async def test_a_failed_call_is_followed_by_a_working_one(fake: FakeOpenAI, provider: OpenAIProvider) -> None:
    fake.fail_next(status=503, headers={"retry-after-ms": "250"}, path="/v1/embeddings")

    with pytest.raises(RetryableJobError) as info:
        await provider.embed(["a"])

    assert info.value.retry_after == 0.25
    assert await provider.embed(["a"]) == [FakeOpenAI.vector_for("a", DIMS)]


async def test_wrong_api_key_fails_permanently_mentioning_llm_api_key(fake: FakeOpenAI) -> None:
    provider = make_provider(fake.base_url, api_key="sk-wrong")
    try:
        with pytest.raises(PermanentJobError, match="LLM_API_KEY") as info:
            await provider.embed(["a"])
    finally:
        await provider.aclose()
    assert isinstance(info.value.__cause__, openai.AuthenticationError)


def _unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def test_connection_refused_is_retryable() -> None:
    provider = make_provider(f"http://127.0.0.1:{_unused_port()}/v1")
    try:
        with pytest.raises(RetryableJobError, match="could not reach"):
            await provider.embed(["a"])
    finally:
        await provider.aclose()


async def test_aclose_is_safe_twice(fake: FakeOpenAI) -> None:
    provider = make_provider(fake.base_url)
    await provider.aclose()
    await provider.aclose()


# configuration


def test_missing_api_key_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match=r"set LLM_API_KEY \(or LLM_BASE_URL"):
        provider_from_settings(settings())


def test_unknown_provider_is_a_configuration_error_naming_llm_provider() -> None:
    with pytest.raises(ConfigurationError, match="LLM_PROVIDER"):
        provider_from_settings(settings(llm_provider="anthropic", llm_api_key="k"))


def test_openai_compatible_needs_a_base_url() -> None:
    with pytest.raises(ConfigurationError, match="LLM_BASE_URL"):
        provider_from_settings(settings(llm_provider="openai-compatible", llm_api_key="k"))


async def test_a_base_url_without_key_sends_a_placeholder() -> None:
    with FakeOpenAI(dims=DIMS) as server:
        provider = provider_from_settings(
            settings(llm_provider="openai-compatible", llm_base_url=server.base_url, embedding_dims=DIMS)
        )
        try:
            await provider.embed(["a"])
        finally:
            await provider.aclose()
        assert server.requests[0].headers["authorization"] == f"Bearer {PLACEHOLDER_API_KEY}"


async def test_settings_rate_limit_caps_calls_across_the_provider(
    fake: FakeOpenAI, redis_client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LLM_RATE_LIMIT_PER_MINUTE", "2")
    monkeypatch.setenv("LLM_RATE_LIMIT_MAX_WAIT", "0.1")
    provider = provider_from_settings(
        settings(llm_api_key=API_KEY, llm_base_url=fake.base_url, embedding_dims=DIMS), redis=redis_client
    )
    try:
        for _ in range(2):
            await provider.complete_json("s", "u", Enrichment, schema_name="enrichment")
        with pytest.raises(RetryableJobError, match="openai:chat") as info:
            await provider.complete_json("s", "u", Enrichment, schema_name="enrichment")
        await provider.embed(["embeddings are not limited"])
    finally:
        await provider.aclose()

    assert 0 < info.value.retry_after <= 60
    assert len(fake.requests_to("/v1/chat/completions")) == 2


# the pure policy


def _status_error(status: int, headers: dict[str, str] | None = None) -> openai.APIStatusError:
    request = httpx.Request("POST", "https://api.openai.com/v1/embeddings")
    response = httpx.Response(status, headers=headers, request=request)
    return openai.APIStatusError(f"error {status}", response=response, body=None)


@pytest.mark.parametrize("status", [408, 409, 429, 500, 502, 503, 504])
def test_map_openai_error_retries_what_the_sdk_would(status: int) -> None:
    error = map_openai_error(_status_error(status, {"Retry-After": "3"}))

    assert isinstance(error, RetryableJobError)
    assert error.retry_after == 3


@pytest.mark.parametrize("status", [400, 401, 403, 404, 422])
def test_map_openai_error_fails_client_errors_permanently(status: int) -> None:
    error = map_openai_error(_status_error(status))

    assert isinstance(error, PermanentJobError)
    assert ("LLM_API_KEY" in str(error)) == (status in (401, 403))


def test_map_openai_error_retries_connection_problems() -> None:
    request = httpx.Request("POST", "https://api.openai.com/v1/embeddings")

    assert isinstance(map_openai_error(openai.APIConnectionError(request=request)), RetryableJobError)
    assert isinstance(map_openai_error(openai.APITimeoutError(request)), RetryableJobError)


def test_map_openai_error_treats_unknown_sdk_errors_as_permanent() -> None:
    assert isinstance(map_openai_error(openai.OpenAIError("odd")), PermanentJobError)


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"Retry-After": "2"}, 2.0),
        ({"retry-after": "1.5"}, 1.5),
        ({"retry-after-ms": "250", "Retry-After": "9"}, 0.25),
        ({"Retry-After": "Wed, 21 Oct 2015 07:28:30 GMT"}, 30.0),
        ({"Retry-After": "Wed, 21 Oct 2015 07:27:00 GMT"}, 0.0),
        ({"Retry-After": "soon"}, None),
        ({"Retry-After": "nan"}, None),
        ({}, None),
    ],
)
def test_parse_retry_after(headers: dict[str, str], expected: float | None) -> None:
    now = 1445412480.0  # Wed, 21 Oct 2015 07:28:00 GMT
    assert parse_retry_after(headers, now=now) == expected
