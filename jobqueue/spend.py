"""What the LLM provider costs: prices, per-call accounting, and the last hour and day per queue.

Every provider call a worker makes is accounted once with ``record_usage``: it adds to the worker
process's Prometheus counters (``jobqueue_llm_requests_total``, ``jobqueue_llm_tokens_total`` by
``kind`` input/output, ``jobqueue_llm_cost_usd_total``, all by queue, model and lane) and to
per-minute and per-hour hashes in Redis (``jq:<queue>:llm:m:<minute>``, ``jq:<queue>:llm:h:<hour>``,
fields ``<model>|<lane>|<figure>``), which expire after 2 and 26 hours, so that ``jobqueue stats``
and the dashboard can show every process's spend (``spend_summary``).

Prices are USD per million tokens, from ``JOBQUEUE_LLM_PRICES`` (JSON, model -> ``{"input": ...,
"output": ...}``, merged over ``DEFAULT_LLM_PRICES``); the batch lane pays
``JOBQUEUE_LLM_BATCH_DISCOUNT`` (0.5) of them. A model with no price costs 0 and is logged once.
"""

from __future__ import annotations

import logging
import time
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Final

from pydantic import BaseModel, ConfigDict, Field
from pydantic_settings import BaseSettings, SettingsConfigDict
from redis.exceptions import RedisError

from jobqueue._env import read_settings
from jobqueue.backend._keys import QueueKeys
from jobqueue.backend.connection import get_redis, redis_errors
from jobqueue.coreapi.results import Lane, LLMUsage
from jobqueue.metrics import worker_metrics

if TYPE_CHECKING:
    from redis.asyncio import Redis

logger = logging.getLogger("jobqueue.spend")

TOKENS_PER_PRICE_UNIT: Final = 1_000_000
# USD per 1M tokens, OpenAI's list prices for the models the workers use by default and their kin.
DEFAULT_LLM_PRICES: Final = {
    "text-embedding-3-small": {"input": 0.02, "output": 0.0},
    "text-embedding-3-large": {"input": 0.13, "output": 0.0},
    "text-embedding-ada-002": {"input": 0.10, "output": 0.0},
    "gpt-4o-mini": {"input": 0.15, "output": 0.60},
    "gpt-4o": {"input": 2.50, "output": 10.00},
    "gpt-4.1-mini": {"input": 0.40, "output": 1.60},
    "gpt-4.1-nano": {"input": 0.10, "output": 0.40},
}
DEFAULT_BATCH_DISCOUNT: Final = 0.5
# Minute buckets cover the last hour, hour buckets the last day; each outlives its use by a margin.
MINUTE_BUCKET_TTL_S: Final = 2 * 3600
HOUR_BUCKET_TTL_S: Final = 26 * 3600
HOUR_MINUTES: Final = 60
DAY_HOURS: Final = 24
_FIGURES: Final = ("requests", "input", "output", "cost")
_SEP: Final = "|"


class ModelPrice(BaseModel):
    """USD per million input and output tokens of one model."""

    model_config = ConfigDict(extra="forbid")

    input: float = Field(ge=0)
    output: float = Field(0.0, ge=0)


class PriceSettings(BaseSettings):
    """``JOBQUEUE_LLM_PRICES`` and ``JOBQUEUE_LLM_BATCH_DISCOUNT``."""

    model_config = SettingsConfigDict(env_prefix="JOBQUEUE_", extra="ignore")

    llm_prices: dict[str, ModelPrice] = {}
    llm_batch_discount: float = Field(DEFAULT_BATCH_DISCOUNT, ge=0, le=1)


class PriceTable:
    """Prices by model (the defaults, overridden per model by ``JOBQUEUE_LLM_PRICES``)."""

    def __init__(self, prices: dict[str, ModelPrice], batch_discount: float = DEFAULT_BATCH_DISCOUNT) -> None:
        self.prices = {name: ModelPrice(**p) for name, p in DEFAULT_LLM_PRICES.items()} | prices
        self.batch_discount = batch_discount
        self._unpriced: set[str] = set()

    def cost_usd(self, model: str, lane: Lane, input_tokens: int, output_tokens: int) -> float:
        """What the tokens cost; 0 for a model without a price (logged once per model)."""
        price = self.prices.get(model)
        if price is None:
            if model not in self._unpriced:
                self._unpriced.add(model)
                logger.warning("no price for LLM model %r: its cost counts as 0 (set JOBQUEUE_LLM_PRICES)", model)
            return 0.0
        cost = (input_tokens * price.input + output_tokens * price.output) / TOKENS_PER_PRICE_UNIT
        return cost * self.batch_discount if lane == "batch" else cost


@lru_cache(maxsize=1)
def price_table() -> PriceTable:
    """The process's price table, read from the environment on first use (``cache_clear()`` to reread)."""
    settings = read_settings(PriceSettings)
    return PriceTable(settings.llm_prices, settings.llm_batch_discount)


def priced(usage: LLMUsage) -> LLMUsage:
    """``usage`` with ``cost_usd`` from the price table."""
    cost = price_table().cost_usd(usage.model, usage.lane, usage.input_tokens, usage.output_tokens)
    return usage.model_copy(update={"cost_usd": cost})


async def record_usage(redis: Redis | None, queue: str, usage: LLMUsage) -> LLMUsage:
    """Account one provider call (or one queue's share of it): counters, and Redis' per-minute
    and per-hour figures when ``redis`` is given. Returns ``usage`` priced.

    Redis being away loses these figures (never the job): they are statistics, logged and skipped.
    """
    usage = priced(usage)
    if usage.cached:
        return usage
    metrics = worker_metrics()
    labels = (queue, usage.model, usage.lane)
    metrics.llm_requests.labels(*labels).inc(usage.requests)
    metrics.llm_tokens.labels(*labels, "input").inc(usage.input_tokens)
    metrics.llm_tokens.labels(*labels, "output").inc(usage.output_tokens)
    metrics.llm_cost.labels(*labels).inc(usage.cost_usd)
    if redis is not None:
        try:
            await _add_to_buckets(redis, queue, usage, time.time())
        except RedisError as exc:  # statistics must never fail the job that paid for them
            logger.warning("%s: LLM usage not written to Redis: %s", queue, exc)
    return usage


async def _add_to_buckets(redis: Redis, queue: str, usage: LLMUsage, now: float) -> None:
    keys = QueueKeys(queue)
    minute = int(now // 60)
    prefix = usage.model + _SEP + usage.lane + _SEP
    pipe = redis.pipeline(transaction=False)
    for key, ttl in ((keys.llm_minute(minute), MINUTE_BUCKET_TTL_S), (keys.llm_hour(minute // 60), HOUR_BUCKET_TTL_S)):
        pipe.hincrbyfloat(key, prefix + "requests", usage.requests)
        pipe.hincrby(key, prefix + "input", usage.input_tokens)
        pipe.hincrby(key, prefix + "output", usage.output_tokens)
        pipe.hincrbyfloat(key, prefix + "cost", usage.cost_usd)
        pipe.expire(key, ttl)
    await pipe.execute()


def _empty() -> dict[str, Any]:
    return {"requests": 0.0, "input_tokens": 0, "output_tokens": 0, "cost_usd": 0.0, "by_model": []}


def _total(rows: list[dict[bytes, bytes]]) -> dict[str, Any]:
    by: dict[tuple[str, str], dict[str, float]] = {}
    for row in rows:
        for raw_field, raw_value in row.items():
            model, lane, figure = raw_field.decode().rsplit(_SEP, 2)
            if figure in _FIGURES:
                entry = by.setdefault((model, lane), dict.fromkeys(_FIGURES, 0.0))
                entry[figure] += float(raw_value)
    out = _empty()
    for (model, lane), f in sorted(by.items()):
        item = {
            "model": model,
            "lane": lane,
            "requests": round(f["requests"], 3),
            "input_tokens": int(f["input"]),
            "output_tokens": int(f["output"]),
            "cost_usd": round(f["cost"], 6),
        }
        out["by_model"].append(item)
        for name in ("requests", "input_tokens", "output_tokens", "cost_usd"):
            out[name] += item[name]
    out["requests"] = round(out["requests"], 3)
    out["cost_usd"] = round(out["cost_usd"], 6)
    return out


async def spend_summary(queue: str, *, now: float | None = None) -> dict[str, Any]:
    """Requests, input and output tokens and cost of ``queue`` over the last hour (the last 60
    minute buckets) and the last day (this hour and the 23 before it), in total and by model and
    lane: ``{"hour": {...}, "day": {...}}``, each ``{"requests", "input_tokens", "output_tokens",
    "cost_usd", "by_model": [{"model", "lane", ...}]}``."""
    keys = QueueKeys(queue)
    minute = int((time.time() if now is None else now) // 60)
    hour = minute // 60
    async with redis_errors(queue=queue):
        pipe = get_redis(queue).pipeline(transaction=False)
        for m in range(minute - HOUR_MINUTES + 1, minute + 1):
            pipe.hgetall(keys.llm_minute(m))
        for h in range(hour - DAY_HOURS + 1, hour + 1):
            pipe.hgetall(keys.llm_hour(h))
        rows = await pipe.execute()
    return {"hour": _total(rows[:HOUR_MINUTES]), "day": _total(rows[HOUR_MINUTES:])}
