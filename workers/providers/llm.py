"""Embedding and chat providers through the ``openai`` SDK, with provider errors mapped to job errors."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Protocol, TypeVar

import openai
import pydantic
from openai.types.chat import ChatCompletion
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from jobqueue import tracing
from jobqueue.coreapi.results import LLMUsage
from jobqueue.errors import ConfigurationError, JobError, PermanentJobError, RetryableJobError
from jobqueue.spend import priced
from jobqueue.spend import record_usage as _record_usage
from workers.providers._http import parse_retry_after
from workers.providers.providerlimits import ProviderLimits
from workers.providers.ratelimit import (
    RateLimiter,
    RateLimitSettings,
    TokenRateLimiter,
    rate_limiter_for,
    token_limiter_for,
)

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from jobqueue.settings import Settings

SUPPORTED_PROVIDERS: Final = ("openai", "openai-compatible")
OPENAI_BASE_URL: Final = "https://api.openai.com/v1"
# Sent when LLM_BASE_URL points at a server that needs no key: the SDK always sends a bearer token.
PLACEHOLDER_API_KEY: Final = "not-needed"
DEFAULT_LLM_TIMEOUT_S: Final = 60.0
# Models that reject the `dimensions` parameter (it came with text-embedding-3).
_MODELS_WITHOUT_DIMENSIONS: Final = frozenset({"text-embedding-ada-002"})
# Statuses the openai SDK itself treats as transient; any other 4xx cannot be fixed by retrying.
_RETRYABLE_STATUSES: Final = frozenset({408, 409, 429})
_PREVIEW_CHARS: Final = 200
# Inputs and tokens (all inputs together) OpenAI accepts in one embeddings request.
OPENAI_MAX_EMBEDDING_INPUTS: Final = 2048
OPENAI_MAX_EMBEDDING_REQUEST_TOKENS: Final = 300_000
# Characters per token in OpenAI's rule of thumb for English text, used to estimate tokens before a
# request (the provider counts exactly; an input it finds too long is answered 400).
CHARS_PER_TOKEN: Final = 4


def estimate_tokens(text: str) -> int:
    """Tokens ``text`` is expected to cost: one per ``CHARS_PER_TOKEN`` characters, at least one."""
    return max(1, -(-len(text) // CHARS_PER_TOKEN))


def request_chunks(texts: list[str], max_inputs: int, max_tokens: int) -> list[list[str]]:
    """``texts`` in order, cut into runs that each fit one embeddings request: at most
    ``max_inputs`` inputs and ``max_tokens`` estimated tokens (a single text over it goes alone:
    the provider judges it)."""
    chunks: list[list[str]] = []
    current: list[str] = []
    tokens = 0
    for text in texts:
        cost = estimate_tokens(text)
        if current and (len(current) >= max_inputs or tokens + cost > max_tokens):
            chunks.append(current)
            current, tokens = [], 0
        current.append(text)
        tokens += cost
    if current:
        chunks.append(current)
    return chunks


async def record_usage(redis: Redis | None, queue: str, usage: LLMUsage) -> LLMUsage:
    """Account one provider call (or a queue's share of one) of ``usage.model`` on ``usage.lane``:
    the Prometheus counters ``jobqueue_llm_requests_total``, ``jobqueue_llm_tokens_total`` and
    ``jobqueue_llm_cost_usd_total``, and with ``redis`` the per-minute and per-hour figures of
    ``queue`` that ``jobqueue stats`` and the dashboard show. Returns ``usage`` priced from the
    price table (the batch lane at its discount). See ``jobqueue.spend``."""
    return await _record_usage(redis, queue, usage)


def add_usage(a: LLMUsage, b: LLMUsage) -> LLMUsage:
    """The usage of both (same model and lane), cost included."""
    return a.model_copy(
        update={
            "requests": a.requests + b.requests,
            "input_tokens": a.input_tokens + b.input_tokens,
            "output_tokens": a.output_tokens + b.output_tokens,
            "cost_usd": a.cost_usd + b.cost_usd,
        }
    )


@dataclass(frozen=True, slots=True)
class Embedded:
    """Vectors in input order and the usage of the requests that made them."""

    vectors: list[list[float]]
    usage: LLMUsage


@dataclass(frozen=True, slots=True)
class Answered:
    """A chat answer parsed into its schema and the usage of its request (None: not reported)."""

    value: Any
    usage: LLMUsage | None


async def answer_counted(
    llm: ChatProvider, system: str, user: str, schema: type[ModelT], *, schema_name: str
) -> Answered:
    """``llm``'s answer with its usage; a ``ChatProvider`` that reports none (a host's own, a test
    double) answers with ``usage`` None."""
    counted = getattr(llm, "complete_json_counted", None)
    if counted is not None:
        return await counted(system, user, schema, schema_name=schema_name)
    return Answered(await llm.complete_json(system, user, schema, schema_name=schema_name), None)


class InvalidInputError(PermanentJobError):
    """The provider rejected the request's content (400/422): retrying it as it is cannot help."""


class RateLimitedError(RetryableJobError):
    """The provider answered 429; ``retry_after`` is its ``Retry-After`` when it sent one."""


ModelT = TypeVar("ModelT", bound=pydantic.BaseModel)


class EmbeddingProvider(Protocol):
    """Turns texts into vectors of ``dims`` floats with ``embedding_model``."""

    @property
    def embedding_model(self) -> str: ...

    @property
    def dims(self) -> int | None: ...

    def warm_up(self) -> None:
        """Import the SDK's resource modules now, at worker start-up, not inside the first job
        (a blocking import there stalls the event loop and with it the worker's heartbeat)."""
        _ = self._client.embeddings, self._client.chat.completions

    async def embed(self, texts: list[str]) -> list[list[float]]: ...


class ChatProvider(Protocol):
    """Answers a prompt with JSON validated by a pydantic schema."""

    @property
    def model(self) -> str: ...

    async def complete_json(self, system: str, user: str, schema: type[ModelT], *, schema_name: str) -> ModelT: ...


class LLMSettings(BaseSettings):
    """Client options beyond ``jobqueue.settings.Settings``."""

    model_config = SettingsConfigDict(env_prefix="", extra="ignore")

    llm_timeout: float = Field(DEFAULT_LLM_TIMEOUT_S, gt=0)
    # None: send `dimensions` unless the model is known to reject it.
    embedding_send_dimensions: bool | None = None


class OpenAIProvider:
    """Both providers on one ``openai.AsyncOpenAI`` client; call ``aclose()`` when done."""

    def __init__(
        self,
        *,
        api_key: str,
        base_url: str | None = None,
        model: str,
        embedding_model: str,
        dims: int | None,
        timeout: float = DEFAULT_LLM_TIMEOUT_S,
        send_dimensions: bool | None = None,
        chat_limiter: RateLimiter | None = None,
        embedding_limiter: RateLimiter | None = None,
        embedding_token_limiter: TokenRateLimiter | None = None,
        rate_limit_wait: float | None = None,
        chat_limits: ProviderLimits | None = None,
        embedding_limits: ProviderLimits | None = None,
        queue: str | None = None,
        redis: Redis | None = None,
    ) -> None:
        self._model = model
        self._embedding_model = embedding_model
        self._dims = dims
        self._send_dimensions = (
            embedding_model not in _MODELS_WITHOUT_DIMENSIONS if send_dimensions is None else send_dimensions
        )
        self._chat_limiter = chat_limiter
        self._embedding_limiter = embedding_limiter
        self._embedding_token_limiter = embedding_token_limiter
        self._rate_limit_wait = rate_limit_wait
        # Learnt from the provider's headers; the limiters above are the hand-set ceilings.
        self._chat_limits = chat_limits
        self._embedding_limits = embedding_limits
        # With a queue, each call is accounted to it (jobqueue.spend); without, the caller does it.
        self._queue = queue
        self._redis = redis
        self._pacing = asyncio.Lock()
        # max_retries=0: a 429 or 5xx must reach the job system at once, which retries the whole job
        # with its own backoff (and Retry-After) instead of the SDK sleeping inside a job slot.
        self._client = openai.AsyncOpenAI(
            api_key=api_key,
            base_url=base_url or OPENAI_BASE_URL,
            timeout=timeout,
            max_retries=0,
        )
        self._closed = False

    @property
    def model(self) -> str:
        return self._model

    @property
    def embedding_model(self) -> str:
        return self._embedding_model

    @property
    def dims(self) -> int | None:
        return self._dims

    @property
    def max_batch_inputs(self) -> int:
        """The most inputs one embeddings request may carry."""
        return OPENAI_MAX_EMBEDDING_INPUTS

    @property
    def max_request_tokens(self) -> int:
        """The most estimated tokens one embeddings request may carry: the provider's cap, or the
        shared token limit when that is lower (a bigger request could never be granted)."""
        if self._embedding_token_limiter is None:
            return OPENAI_MAX_EMBEDDING_REQUEST_TOKENS
        return min(OPENAI_MAX_EMBEDDING_REQUEST_TOKENS, self._embedding_token_limiter.limit)

    @property
    def token_limit_per_minute(self) -> int | None:
        """The shared tokens-per-window cap on embeddings, if one is set."""
        return None if self._embedding_token_limiter is None else self._embedding_token_limiter.limit

    @property
    def identity(self) -> str:
        """What besides model, dimensions and text decides a vector: the provider's address."""
        return str(self._client.base_url)

    @property
    def sent_dimensions(self) -> int | None:
        """The ``dimensions`` each embeddings request carries, or None (the model's own size)."""
        return self._dims if self._dims is not None and self._send_dimensions else None

    def warm_up(self) -> None:
        """Import the SDK's resource modules now, at worker start-up, not inside the first job
        (a blocking import there stalls the event loop and with it the worker's heartbeat)."""
        _ = self._client.embeddings, self._client.chat.completions

    async def embed(self, texts: list[str]) -> list[list[float]]:
        """One vector per text, in input order; raises ``JobError`` subclasses only."""
        vectors = await self.embed_unchecked(texts)
        for vector in vectors:
            problem = self.vector_problem(vector)
            if problem is not None:
                raise PermanentJobError(problem)
        return vectors

    async def embed_unchecked(self, texts: list[str]) -> list[list[float]]:
        """One vector per text, in input order, each not yet checked with ``vector_problem``."""
        return (await self.embed_counted(texts)).vectors

    async def embed_counted(self, texts: list[str]) -> Embedded:
        """One vector per text, in input order, each not yet checked with ``vector_problem`` (a
        batch checks each input's on its own), and the usage the provider reported.

        Texts beyond one request's caps (2,048 inputs, 300k tokens) go in several requests, one
        after the other. Each request takes a slot of the hand-set limits, then room in the
        provider's own limits as its headers taught them.
        """
        vectors: list[list[float]] = []
        usage = LLMUsage(model=self._embedding_model)
        for chunk in request_chunks(texts, self.max_batch_inputs, self.max_request_tokens):
            got, used = await self._embed_request(chunk)
            vectors += got
            usage = add_usage(usage, used)
        if self._queue is not None and usage.requests:
            usage = await record_usage(self._redis, self._queue, usage)
        return Embedded(vectors, priced(usage))

    async def _embed_request(self, texts: list[str]) -> tuple[list[list[float]], LLMUsage]:
        tokens = sum(estimate_tokens(text) for text in texts)

        async def ceilings() -> None:
            if self._embedding_limiter is not None:
                await self._embedding_limiter.acquire(self._rate_limit_wait)
            if self._embedding_token_limiter is not None:
                await self._embedding_token_limiter.acquire(self._rate_limit_wait, cost=tokens)

        response = await self._call(
            "embeddings",
            ceilings,
            self._embedding_limits,
            tokens,
            lambda: self._client.embeddings.with_raw_response.create(**self.embedding_body(texts)),
            inputs=len(texts),
        )
        data = sorted(response.data, key=lambda item: item.index)
        if [item.index for item in data] != list(range(len(texts))):
            raise PermanentJobError(
                f"embedding model {self._embedding_model} returned {len(data)} vectors for {len(texts)} texts"
            )
        reported = response.usage
        usage = LLMUsage(
            model=self._embedding_model, requests=1, input_tokens=reported.prompt_tokens if reported else 0
        )
        return [list(item.embedding) for item in data], usage

    async def _call(
        self,
        operation: str,
        ceilings: Callable[[], Awaitable[None]],
        limits: ProviderLimits | None,
        tokens: int,
        send: Callable[[], Awaitable[Any]],
        inputs: int | None = None,
    ) -> Any:
        """``send()`` a ``with_raw_response`` request once the hand-set ``ceilings`` and the
        provider's learnt limits allow it, teach the limits its headers (a refusal's too), and
        return the parsed response.

        The calls of one process wait for the limits one at a time, in arrival order: every
        waiter sleeps until the moment the budget frees, and hundreds of them waking together
        to ask Redis for the same one slot cost a worker more CPU than its jobs did.
        """
        async with self._pacing:
            await ceilings()
            grant = None if limits is None else await limits.acquire(self._rate_limit_wait, tokens=tokens)
        model = self._embedding_model if operation == "embeddings" else self._model
        with tracing.span(f"{operation} {model}", kind="client", attributes=self._span_attributes(operation)) as span:
            if inputs is not None:
                span.set_attribute("jobqueue.llm.inputs", inputs)
            try:
                raw = await send()
            except openai.APIStatusError as exc:
                if limits is not None and grant is not None:
                    await limits.observe(grant, exc.response.headers)
                raise map_openai_error(exc) from exc
            except openai.OpenAIError as exc:
                raise map_openai_error(exc) from exc
            parsed = raw.parse()
            reported = getattr(parsed, "usage", None)
            if reported is not None:
                span.set_attribute("gen_ai.usage.input_tokens", reported.prompt_tokens)
                if getattr(reported, "completion_tokens", None) is not None:
                    span.set_attribute("gen_ai.usage.output_tokens", reported.completion_tokens)
        if limits is not None and grant is not None:
            usage = getattr(parsed, "usage", None)
            await limits.observe(grant, raw.headers, used_tokens=getattr(usage, "prompt_tokens", None))
        return parsed

    def _span_attributes(self, operation: str) -> dict[str, Any]:
        """OpenTelemetry's GenAI attributes of a call (its span is a child of the job's run)."""
        model = self._embedding_model if operation == "embeddings" else self._model
        return {
            "gen_ai.operation.name": operation,
            "gen_ai.system": "openai",
            "gen_ai.request.model": model,
            "server.address": self._client.base_url.host,
        }

    @property
    def client(self) -> openai.AsyncOpenAI:
        """The SDK client (the batch lane uploads files and creates batches with it)."""
        return self._client

    def embedding_body(self, texts: list[str] | str) -> dict[str, Any]:
        """The embeddings request body for ``texts``: the same for a call and a Batch API line."""
        body: dict[str, Any] = {"model": self._embedding_model, "input": texts}
        if self.sent_dimensions is not None:
            body["dimensions"] = self.sent_dimensions
        return body

    def chat_body(
        self, system: str, user: str, schema: type[pydantic.BaseModel], *, schema_name: str
    ) -> dict[str, Any]:
        """The chat request body asking for ``schema``: the same for a call and a Batch API line."""
        response_format = {
            "type": "json_schema",
            "json_schema": {"name": schema_name, "schema": strict_json_schema(schema), "strict": True},
        }
        messages = [{"role": "system", "content": system}, {"role": "user", "content": user}]
        return {"model": self._model, "messages": messages, "response_format": response_format}

    def vector_problem(self, vector: list[float]) -> str | None:
        """Why ``vector`` cannot be stored (a length other than ``EMBEDDING_DIMS``), or None."""
        if self._dims is not None and len(vector) != self._dims:
            return (
                f"embedding model {self._embedding_model} returned {len(vector)} dimensions, "
                f"expected {self._dims}: set EMBEDDING_DIMS to the model's size"
            )
        return None

    async def complete_json(self, system: str, user: str, schema: type[ModelT], *, schema_name: str) -> ModelT:
        """The model's answer parsed into ``schema``; output that does not fit is permanent."""
        return (await self.complete_json_counted(system, user, schema, schema_name=schema_name)).value

    async def complete_json_counted(
        self, system: str, user: str, schema: type[ModelT], *, schema_name: str
    ) -> Answered:
        """``complete_json``'s answer (``.value``) and the usage of its request (``.usage``, also
        accounted to the provider's queue when it has one, whatever the answer was worth)."""

        async def ceilings() -> None:
            if self._chat_limiter is not None:
                await self._chat_limiter.acquire(self._rate_limit_wait)

        completion = await self._call(
            "chat",
            ceilings,
            self._chat_limits,
            estimate_tokens(system) + estimate_tokens(user),
            lambda: self._client.chat.completions.with_raw_response.create(
                **self.chat_body(system, user, schema, schema_name=schema_name)
            ),
        )
        reported = completion.usage
        usage = LLMUsage(
            model=self._model,
            requests=1,
            input_tokens=reported.prompt_tokens if reported else 0,
            output_tokens=reported.completion_tokens if reported else 0,
        )
        usage = await record_usage(self._redis, self._queue, usage) if self._queue is not None else priced(usage)
        return Answered(self.parse_completion(completion, schema), usage)

    def parse_completion(self, completion: ChatCompletion, schema: type[ModelT]) -> ModelT:
        """The completion's answer parsed into ``schema``; an answer that does not fit is permanent."""
        if not completion.choices:
            raise PermanentJobError(f"LLM {self._model} returned no choices")
        choice = completion.choices[0]
        if choice.message.refusal:
            raise PermanentJobError(f"LLM {self._model} refused: {choice.message.refusal}")
        if choice.finish_reason == "length":
            raise PermanentJobError(f"LLM {self._model} output was cut off at the token limit")
        if choice.finish_reason == "content_filter":
            raise PermanentJobError(f"LLM {self._model} output was blocked by the content filter")
        content = choice.message.content
        if not content:
            raise PermanentJobError(f"LLM {self._model} returned an empty message")
        try:
            return schema.model_validate_json(content)
        except pydantic.ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(map(str, err['loc'])) or '<root>'}: {err['msg']}" for err in exc.errors()[:5]
            )
            raise PermanentJobError(
                f"LLM returned output that does not match {schema.__name__}: {problems} "
                f"(output began {content[:_PREVIEW_CHARS]!r})"
            ) from exc

    async def aclose(self) -> None:
        """Close the HTTP client; safe to call more than once."""
        if not self._closed:
            self._closed = True
            await self._client.close()


def strict_json_schema(schema: type[pydantic.BaseModel]) -> dict[str, Any]:
    """``schema``'s JSON schema in the form ``strict: true`` requires.

    OpenAI rejects a plain ``model_json_schema()`` under strict mode (every object needs
    ``additionalProperties: false`` and every property listed in ``required``); the SDK's public
    ``pydantic_function_tool`` applies exactly that conversion.
    """
    return dict(openai.pydantic_function_tool(schema)["function"]["parameters"])


def provider_from_settings(
    settings: Settings | None = None, *, redis: Redis | None = None, queue: str | None = None
) -> OpenAIProvider:
    """Build the provider from ``LLM_*`` / ``EMBEDDING_*`` settings (read now, never at import).

    ``LLM_API_KEY`` is required unless ``LLM_BASE_URL`` is set: a local OpenAI-compatible server
    needs no key, and a placeholder is sent. With ``redis``, the ``*_RATE_LIMIT_PER_MINUTE`` limits
    are shared by all workers under ``jq:ratelimit:<LLM_PROVIDER>:chat|embeddings``, and
    ``EMBEDDING_TOKEN_LIMIT_PER_MINUTE`` under ``jq:ratelimit:<LLM_PROVIDER>:embeddings:tokens``;
    the limits learnt from the provider's headers under ``...:chat|embeddings:learned``
    (``LLM_HEADER_LIMITS=false`` turns that off). With ``queue``, every call is accounted to it
    (``record_usage``).
    """
    if settings is None:
        from jobqueue.settings import get_settings

        settings = get_settings()
    provider = settings.llm_provider.strip().lower()
    if provider not in SUPPORTED_PROVIDERS:
        raise ConfigurationError(
            f"unknown LLM_PROVIDER {settings.llm_provider!r}: set LLM_PROVIDER to one of "
            + ", ".join(SUPPORTED_PROVIDERS)
        )
    base_url = settings.llm_base_url or None
    if provider == "openai-compatible" and base_url is None:
        raise ConfigurationError("LLM_PROVIDER=openai-compatible needs LLM_BASE_URL: set LLM_BASE_URL")
    api_key = settings.llm_api_key or None
    if api_key is None and base_url is None:
        raise ConfigurationError("set LLM_API_KEY (or LLM_BASE_URL for an OpenAI-compatible server)")
    options = LLMSettings()
    chat_limiter = embedding_limiter = token_limiter = None
    chat_limits = embedding_limits = None
    rate_limit_wait = None
    if redis is not None:
        limits = RateLimitSettings()
        chat_limiter = rate_limiter_for(redis, provider, "chat", limits)
        embedding_limiter = rate_limiter_for(redis, provider, "embeddings", limits)
        token_limiter = token_limiter_for(redis, provider, "embeddings", limits)
        rate_limit_wait = limits.llm_rate_limit_max_wait
        if limits.llm_header_limits:
            chat_limits = ProviderLimits(redis, f"{provider}:chat")
            embedding_limits = ProviderLimits(redis, f"{provider}:embeddings")
    return OpenAIProvider(
        api_key=api_key or PLACEHOLDER_API_KEY,
        base_url=base_url,
        model=settings.llm_model,
        embedding_model=settings.embedding_model,
        dims=settings.embedding_dims,
        timeout=options.llm_timeout,
        send_dimensions=options.embedding_send_dimensions,
        chat_limiter=chat_limiter,
        embedding_limiter=embedding_limiter,
        embedding_token_limiter=token_limiter,
        rate_limit_wait=rate_limit_wait,
        chat_limits=chat_limits,
        embedding_limits=embedding_limits,
        queue=queue,
        redis=redis,
    )


def map_openai_error(exc: BaseException) -> JobError:
    """The job error for an ``openai`` exception: retryable per the SDK's own list, else permanent."""
    if isinstance(exc, openai.APITimeoutError):
        return RetryableJobError(f"LLM request timed out: {exc}")
    if isinstance(exc, openai.APIConnectionError):
        return RetryableJobError(f"could not reach the LLM provider: {exc}")
    if isinstance(exc, openai.APIStatusError):
        status = exc.status_code
        detail = f"LLM provider returned {status}: {exc.message}"
        if status == 429:
            return RateLimitedError(detail, retry_after=parse_retry_after(exc.response.headers))
        if status in _RETRYABLE_STATUSES or status >= 500:
            return RetryableJobError(detail, retry_after=parse_retry_after(exc.response.headers))
        if status == 401:
            return PermanentJobError(f"{detail} (check LLM_API_KEY)")
        if status == 403:
            return PermanentJobError(f"{detail} (check LLM_API_KEY's permissions for this model)")
        if status == 404:
            return PermanentJobError(f"{detail} (check LLM_MODEL / EMBEDDING_MODEL and LLM_BASE_URL)")
        if status in (400, 422):
            return InvalidInputError(detail)
        return PermanentJobError(detail)
    return PermanentJobError(f"LLM call failed: {exc}")
