"""A micro-batcher for embeddings: the embedding jobs of one worker process share its requests.

A job hands its text to ``EmbeddingBatcher.embed`` and awaits its own vector. The batcher sends one
embeddings request when it holds ``batch_size`` texts, or ``batch_wait`` seconds after the first
one arrived, and answers each caller on its own. Like Nagle's algorithm, a partial batch that falls
due while a request is outstanding (``max_in_flight``, 1) waits until that request has returned,
then ``batch_wait`` more; a full batch never waits. So a lone job is sent after 20 ms, and under load
batches fill instead of leaving every 20 ms half empty, while full batches go out as fast as jobs
arrive.

- a request that fails fails each of its jobs with that error, and each retries by its own
  attempts and backoff;
- an input the provider rejects (400/422) fails only its own job: the batch is split in halves and
  retried until the bad input is alone; empty and over-long inputs are refused before batching;
- each vector is checked on its own (a wrong length fails that job only);
- a 429 pauses the whole batcher until its ``Retry-After`` has passed: no request is sent before;
- a caller that is cancelled (its job timed out, the worker stops) only leaves the batch;
- a request never holds more than the provider takes in one (2,048 inputs, 300k tokens);
- texts already in the content-hash cache (``workers.providers.embedcache``) are answered from it, and a text
  that appears twice in a batch is sent once.

Each caller gets its vector and its share of the request's usage: ``requests`` 1/n of the request
for each of its n callers, and the input tokens the provider reported split in proportion to each
text's estimated tokens (whole tokens, summing to the reported total). Each queue's share is
accounted once per request (``jobqueue.spend.record_usage``).

``batch_size`` 1 turns batching off: every job sends its own request at once.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import weakref
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, Protocol

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from jobqueue._env import read_settings
from jobqueue._envnames import queue_prefix
from jobqueue.coreapi.results import LLMUsage
from jobqueue.errors import JobError, PermanentJobError, RetryableJobError
from jobqueue.metrics import worker_metrics
from jobqueue.spend import priced, record_usage
from workers.providers.embedcache import CacheSettings, EmbeddingCache
from workers.providers.llm import (
    Embedded,
    InvalidInputError,
    OpenAIProvider,
    RateLimitedError,
    estimate_tokens,
    provider_from_settings,
)

if TYPE_CHECKING:
    from redis.asyncio import Redis

logger = logging.getLogger("workers.batching")

DEFAULT_BATCH_SIZE: Final = 64
DEFAULT_BATCH_WAIT_S: Final = 0.02
# OpenAI's per-input limit of its text-embedding-3 and ada-002 models.
DEFAULT_MAX_INPUT_TOKENS: Final = 8191
# A 429 without a Retry-After still pauses the batcher this long.
DEFAULT_PAUSE_S: Final = 1.0
# A job does not wait in the batcher for a pause longer than this: it is retried after it instead.
DEFAULT_MAX_PAUSE_WAIT_S: Final = 30.0


class EmbeddingBackend(Protocol):
    """What the batcher needs of a provider (``workers.providers.llm.OpenAIProvider`` is one)."""

    @property
    def embedding_model(self) -> str: ...

    @property
    def max_batch_inputs(self) -> int: ...

    @property
    def max_request_tokens(self) -> int: ...

    @property
    def token_limit_per_minute(self) -> int | None: ...

    async def embed_counted(self, texts: list[str]) -> Embedded: ...

    def vector_problem(self, vector: list[float]) -> str | None: ...


class BatchSettings(BaseSettings):
    """``JOBQUEUE_<QUEUE>_BATCH_SIZE`` and ``JOBQUEUE_<QUEUE>_BATCH_WAIT`` of one embedding queue."""

    model_config = SettingsConfigDict(extra="ignore")

    batch_size: int = Field(DEFAULT_BATCH_SIZE, ge=1)
    batch_wait: float = Field(DEFAULT_BATCH_WAIT_S, ge=0)


class InputSettings(BaseSettings):
    """``EMBEDDING_MAX_INPUT_TOKENS``: the model's per-input limit, checked before batching."""

    model_config = SettingsConfigDict(env_prefix="", extra="ignore")

    embedding_max_input_tokens: int = Field(DEFAULT_MAX_INPUT_TOKENS, ge=1)


def batch_settings(queue: str) -> BatchSettings:
    """The batch options of ``queue`` from its ``JOBQUEUE_<QUEUE>_BATCH_*`` variables."""
    prefix = queue_prefix(queue)
    per_queue = type(
        BatchSettings.__name__, (BatchSettings,), {"model_config": {**BatchSettings.model_config, "env_prefix": prefix}}
    )
    return read_settings(per_queue)


@dataclass(frozen=True, slots=True)
class EmbeddedText:
    """One caller's vector and its share of the usage of the request that made it."""

    vector: list[float]
    usage: LLMUsage | None


@dataclass(eq=False, slots=True)
class _Item:
    text: str
    tokens: int
    queue: str | None
    future: asyncio.Future[EmbeddedText]


def split_tokens(total: int, weights: list[int]) -> list[int]:
    """``total`` in whole parts proportional to ``weights`` that sum to ``total`` (largest remainder)."""
    scale = sum(weights)
    if scale <= 0:
        return [0] * len(weights)
    exact = [total * w / scale for w in weights]
    parts = [int(x) for x in exact]
    by_remainder = sorted(range(len(weights)), key=lambda i: exact[i] - parts[i], reverse=True)
    for i in by_remainder[: total - sum(parts)]:
        parts[i] += 1
    return parts


@dataclass(slots=True)
class BatcherStats:
    """What a batcher did, for logs, tests and the benchmark."""

    requests: int = 0
    inputs: int = 0
    splits: int = 0
    rate_limited: int = 0
    cache_hits: int = 0
    sizes: list[int] = field(default_factory=list)


class EmbeddingBatcher:
    """Collects texts from concurrent callers into embeddings requests; ``aclose()`` when done."""

    def __init__(
        self,
        backend: EmbeddingBackend,
        *,
        batch_size: int = DEFAULT_BATCH_SIZE,
        batch_wait: float = DEFAULT_BATCH_WAIT_S,
        max_input_tokens: int = DEFAULT_MAX_INPUT_TOKENS,
        max_pause_wait: float = DEFAULT_MAX_PAUSE_WAIT_S,
        max_in_flight: int = 1,
        redis: Redis | None = None,
        cache: EmbeddingCache | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        if batch_wait < 0:
            raise ValueError(f"batch_wait must not be negative, got {batch_wait}")
        if max_in_flight < 1:
            raise ValueError(f"max_in_flight must be at least 1, got {max_in_flight}")
        self._backend = backend
        self.batch_size = min(batch_size, backend.max_batch_inputs)
        if self.batch_size < batch_size:
            logger.warning("embedding batch size %d capped at the provider's %d", batch_size, self.batch_size)
        self.batch_wait = batch_wait
        self.max_input_tokens = max_input_tokens
        # A batch never holds more estimated tokens than one request may carry, nor than the token
        # limit lets through at all.
        self.max_batch_tokens = backend.max_request_tokens
        self.token_limit = backend.token_limit_per_minute
        self._redis = redis
        self._cache = cache
        self.max_pause_wait = max_pause_wait
        self.max_in_flight = max_in_flight
        self.stats = BatcherStats()
        self._pending: list[_Item] = []
        self._pending_tokens = 0
        self._timer: asyncio.TimerHandle | None = None
        # A partial batch fell due while max_in_flight requests were out: it waits for one to return.
        self._due = False
        self._sends: set[asyncio.Task[None]] = set()
        self._paused_until = 0.0
        self._closed = False

    async def embed(self, text: str) -> list[float]:
        """``text``'s vector, from a request shared with other callers.

        Raises the ``JobError`` its request (or its own input) failed with.
        """
        return (await self.embed_counted(text)).vector

    async def embed_counted(self, text: str, queue: str | None = None) -> EmbeddedText:
        """``text``'s vector and its share of the request's usage, accounted to ``queue``."""
        if self._closed:
            raise RetryableJobError("the embedding batcher is closed: the worker is shutting down")
        tokens = estimate_tokens(text)
        if not text.strip():
            raise InvalidInputError("an empty text cannot be embedded")
        if tokens > self.max_input_tokens:
            raise InvalidInputError(
                f"a text of about {tokens} tokens is over the embedding model's limit of "
                f"{self.max_input_tokens} (EMBEDDING_MAX_INPUT_TOKENS)"
            )
        if self.token_limit is not None and tokens > self.token_limit:
            raise InvalidInputError(
                f"a text of about {tokens} tokens can never fit EMBEDDING_TOKEN_LIMIT_PER_MINUTE ({self.token_limit})"
            )
        loop = asyncio.get_running_loop()
        paused_for = self._paused_until - loop.time()
        if paused_for > self.max_pause_wait:
            raise RateLimitedError(
                f"embeddings are paused for {paused_for:.1f}s by the provider's rate limit", retry_after=paused_for
            )
        if self._pending_tokens + tokens > self.max_batch_tokens:
            self._flush()
        item = _Item(text, tokens, queue, loop.create_future())
        self._pending.append(item)
        self._pending_tokens += tokens
        if len(self._pending) >= self.batch_size:
            self._flush()
        elif self._timer is None and not self._due:
            self._timer = loop.call_later(self.batch_wait, self._on_timer)
        # Awaiting the future directly: a cancelled caller cancels only its own future, which
        # the batch then skips (before the request) or ignores (after it).
        return await item.future

    def _on_timer(self) -> None:
        self._timer = None
        if len(self._sends) < self.max_in_flight:
            self._flush()
        else:
            self._due = True

    def _on_sent(self, task: asyncio.Task[None]) -> None:
        self._sends.discard(task)
        if self._due and not self._closed and len(self._sends) < self.max_in_flight:
            # The returning request's jobs are ending and new ones starting: give the partial
            # batch another batch_wait to take them in.
            self._due = False
            if self._pending and self._timer is None:
                self._timer = asyncio.get_running_loop().call_later(self.batch_wait, self._on_timer)

    def _flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._due = False
        items, self._pending, self._pending_tokens = self._pending, [], 0
        if not items:
            return
        task = asyncio.get_running_loop().create_task(self._send(items), name="embedding-batch")
        self._sends.add(task)
        task.add_done_callback(self._on_sent)

    async def _send(self, items: list[_Item]) -> None:
        try:
            items = await self._from_cache(items)
            await self._wait_out_pause(items)
            await self._request(items)
        except asyncio.CancelledError:
            _fail(items, RetryableJobError("the embedding request was cancelled: the worker is shutting down"))
            raise
        except Exception as exc:  # not a provider error (those are JobErrors): hand it to every caller
            logger.exception("embedding batch failed unexpectedly")
            _fail(items, exc)

    async def _wait_out_pause(self, items: list[_Item]) -> None:
        loop = asyncio.get_running_loop()
        while (wait := self._paused_until - loop.time()) > 0:
            if wait > self.max_pause_wait:
                _fail(
                    items,
                    RateLimitedError(
                        f"embeddings are paused for {wait:.1f}s by the provider's rate limit", retry_after=wait
                    ),
                )
                return
            await asyncio.sleep(wait)

    async def _from_cache(self, items: list[_Item]) -> list[_Item]:
        """Answer the items whose text the cache holds; return the others."""
        live = [item for item in items if not item.future.done()]
        if self._cache is None or not live:
            return live
        vectors = await self._cache.get_many([item.text for item in live])
        metrics, model = worker_metrics(), self._backend.embedding_model
        misses = []
        for item, vector in zip(live, vectors, strict=True):
            if vector is None:
                if item.queue is not None:
                    metrics.llm_cache_misses.labels(item.queue, model).inc()
                misses.append(item)
                continue
            if item.queue is not None:
                metrics.llm_cache_hits.labels(item.queue, model).inc()
            self.stats.cache_hits += 1
            if not item.future.done():
                item.future.set_result(EmbeddedText(vector, LLMUsage(model=model, cached=True)))
        return misses

    async def _request(self, items: list[_Item]) -> None:
        live = [item for item in items if not item.future.done()]
        if not live:
            return
        texts = list(dict.fromkeys(item.text for item in live))  # a text twice in a batch is sent once
        self.stats.requests += 1
        self.stats.inputs += len(texts)
        self.stats.sizes.append(len(texts))
        try:
            embedded = await self._backend.embed_counted(texts)
        except RateLimitedError as exc:
            self.stats.rate_limited += 1
            pause = exc.retry_after if exc.retry_after is not None else DEFAULT_PAUSE_S
            loop = asyncio.get_running_loop()
            self._paused_until = max(self._paused_until, loop.time() + pause)
            logger.warning("embeddings rate limited: pausing the batcher for %.2fs", pause)
            _fail(live, exc)
            return
        except InvalidInputError as exc:
            if len(live) == 1:
                _fail(live, exc)
                return
            # One input spoils the whole request: halve until it is alone, so its neighbours pass.
            self.stats.splits += 1
            half = len(live) // 2
            await self._wait_out_pause(live)
            await asyncio.gather(self._request(live[:half]), self._request(live[half:]))
            return
        except JobError as exc:  # a 5xx, a timeout, a bad key...: each job retries or fails on its own
            _fail(live, exc)
            return
        by_text = dict(zip(texts, embedded.vectors, strict=True))
        problems = {text: self._backend.vector_problem(vector) for text, vector in by_text.items()}
        shares = await self._account(live, embedded.usage)
        if self._cache is not None:  # before the callers resume: a worker closing after them keeps it
            await self._cache.put_many([(t, v) for t, v in by_text.items() if problems[t] is None])
        for item, share in zip(live, shares, strict=True):
            problem = problems[item.text]
            if item.future.done():
                continue
            if problem is None:
                item.future.set_result(EmbeddedText(by_text[item.text], share))
            else:
                item.future.set_exception(PermanentJobError(problem))

    async def _account(self, live: list[_Item], usage: LLMUsage) -> list[LLMUsage]:
        """Each item's share of ``usage``; each queue's sum accounted once (``record_usage``)."""
        tokens = split_tokens(usage.input_tokens, [item.tokens for item in live])
        per_item = usage.requests / len(live)
        shares = [
            priced(usage.model_copy(update={"requests": per_item, "input_tokens": t, "output_tokens": 0}))
            for t in tokens
        ]
        queues: dict[str | None, list[int]] = {}
        for index, item in enumerate(live):
            queues.setdefault(item.queue, []).append(index)
        for queue, indexes in queues.items():
            if queue is None:  # a caller outside any queue's worker: its share is in its result only
                continue
            requests = usage.requests if len(queues) == 1 else per_item * len(indexes)
            total = usage.model_copy(
                update={"requests": requests, "input_tokens": sum(tokens[i] for i in indexes), "output_tokens": 0}
            )
            await record_usage(self._redis, queue, total)
        return shares

    async def aclose(self) -> None:
        """Fail what is still waiting (the jobs retry elsewhere) and stop; safe to call twice."""
        if self._closed:
            return
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        pending, self._pending = self._pending, []
        _fail(pending, RetryableJobError("the embedding batcher closed before the request was sent"))
        for task in list(self._sends):
            task.cancel()
        await asyncio.gather(*self._sends, return_exceptions=True)


def _fail(items: list[_Item], exc: BaseException) -> None:
    """Hand ``exc`` to every caller still waiting, each its own copy (tracebacks stay apart)."""
    for item in items:
        if not item.future.done():
            try:
                own = copy.copy(exc)
            except Exception:  # an exception type that cannot be rebuilt from its args
                own = exc
            item.future.set_exception(own)


async def embed_counted(embedder: Any, text: str) -> EmbeddedText:
    """``text``'s vector and usage from ``embedder`` (a ``SharedEmbedder``); an embedder with only
    ``embed`` (a host's own, a test double) reports no usage (``usage`` None)."""
    counted = getattr(embedder, "embed_counted", None)
    if counted is not None:
        return await counted(text)
    return EmbeddedText(await embedder.embed(text), None)


@dataclass(slots=True)
class _Shared:
    batcher: EmbeddingBatcher
    provider: OpenAIProvider
    users: int = 0


# One batcher per event loop and provider/model: every embedding worker (product, taste profile)
# running in this process shares it. The first to start configures it; the last to stop closes it.
_SHARED: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[tuple[Any, ...], _Shared]] = (
    weakref.WeakKeyDictionary()
)


class SharedEmbedder:
    """A worker's handle on its process's shared batcher (``ctx["resources"].embedder``)."""

    def __init__(
        self, registry: dict[tuple[Any, ...], _Shared], key: tuple[Any, ...], shared: _Shared, queue: str
    ) -> None:
        self._queue = queue
        self._registry = registry
        self._key = key
        self._shared = shared
        self._released = False

    @property
    def batcher(self) -> EmbeddingBatcher:
        return self._shared.batcher

    @property
    def embedding_model(self) -> str:
        return self._shared.provider.embedding_model

    async def embed(self, text: str) -> list[float]:
        return (await self.embed_counted(text)).vector

    async def embed_counted(self, text: str) -> EmbeddedText:
        """``text``'s vector and this job's share of the usage, accounted to this worker's queue."""
        return await self._shared.batcher.embed_counted(text, self._queue)

    async def aclose(self) -> None:
        """Release this worker's share; the last one closes the batcher and its client."""
        if self._released:
            return
        self._released = True
        self._shared.users -= 1
        if self._shared.users == 0:
            self._registry.pop(self._key, None)
            await self._shared.batcher.aclose()
            await self._shared.provider.aclose()


def open_shared_embedder(queue: str, redis: Redis | None) -> SharedEmbedder:
    """This process's batcher for the configured embedding provider and model, made on first use
    with ``queue``'s ``JOBQUEUE_<QUEUE>_BATCH_*`` options; raises ``ConfigurationError`` when no
    provider is configured."""
    from jobqueue.settings import get_settings
    from workers.providers.ratelimit import RateLimitSettings

    settings = get_settings()
    registry = _SHARED.setdefault(asyncio.get_running_loop(), {})
    key = (settings.llm_provider, settings.llm_base_url, settings.embedding_model, settings.embedding_dims)
    shared = registry.get(key)
    if shared is None:
        provider = provider_from_settings(settings, redis=redis)
        provider.warm_up()
        options = batch_settings(queue)
        ttl = read_settings(CacheSettings).embedding_cache_ttl
        cache = None
        if redis is not None and ttl > 0:
            cache = EmbeddingCache(
                redis,
                identity=provider.identity,
                model=provider.embedding_model,
                sent_dimensions=provider.sent_dimensions,
                dims=provider.dims,
                ttl=ttl,
            )
        batcher = EmbeddingBatcher(
            provider,
            batch_size=options.batch_size,
            batch_wait=options.batch_wait,
            max_input_tokens=read_settings(InputSettings).embedding_max_input_tokens,
            max_pause_wait=read_settings(RateLimitSettings).llm_rate_limit_max_wait,
            redis=redis,
            cache=cache,
        )
        shared = registry[key] = _Shared(batcher, provider)
        logger.info("%s: embeddings batched by up to %d inputs or %.3fs", queue, batcher.batch_size, batcher.batch_wait)
    shared.users += 1
    return SharedEmbedder(registry, key, shared, queue)
