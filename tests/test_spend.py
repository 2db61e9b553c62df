"""Tokens and cost: each job's usage in its result, the Prometheus counters, the price table, and
the last hour and day per queue in Redis, `jobqueue stats` and the dashboard. Real Redis, real
workers, the loopback OpenAI server (which counts a text's words as its tokens)."""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import pytest
from prometheus_client import REGISTRY

import jobqueue
from jobqueue import LLMUsage
from jobqueue.cli import run
from jobqueue.dashboard import create_app
from jobqueue.spend import PriceTable, price_table, record_usage, spend_summary
from tests.support.workers import run_burst
from workers.jobs.products import canonical_text
from workers.settings import embedding_settings, enrichment_settings
from workers.testing.fake_openai import request_tokens

EMBED_PRICE = {"input": 1000.0}  # USD per 1M tokens: large, so small runs cost visible amounts
CHAT_PRICE = {"input": 2000.0, "output": 8000.0}


@pytest.fixture
def prices(monkeypatch):
    monkeypatch.setenv("JOBQUEUE_LLM_PRICES", json.dumps({"embed-test": EMBED_PRICE, "gpt-test": CHAT_PRICE}))
    price_table.cache_clear()
    yield
    price_table.cache_clear()


def counter(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def spend_counters(queue: str, model: str, lane: str = "sync") -> dict[str, float]:
    labels = {"queue": queue, "model": model, "lane": lane}
    return {
        "requests": counter("jobqueue_llm_requests_total", **labels),
        "input": counter("jobqueue_llm_tokens_total", **labels, kind="input"),
        "output": counter("jobqueue_llm_tokens_total", **labels, kind="output"),
        "cost": counter("jobqueue_llm_cost_usd_total", **labels),
    }


def delta(after: dict[str, float], before: dict[str, float]) -> dict[str, float]:
    return {k: after[k] - before[k] for k in after}


def test_the_price_table_prices_per_million_tokens_with_the_batch_discount() -> None:
    table = PriceTable({})
    assert table.cost_usd("text-embedding-3-small", "sync", 1_000_000, 0) == pytest.approx(0.02)
    assert table.cost_usd("gpt-4o-mini", "sync", 2_000_000, 1_000_000) == pytest.approx(0.30 + 0.60)
    assert table.cost_usd("gpt-4o-mini", "batch", 2_000_000, 1_000_000) == pytest.approx(0.45)
    assert table.cost_usd("no-such-model", "sync", 1_000_000, 1_000_000) == 0.0


def test_jobqueue_llm_prices_overrides_one_model_and_keeps_the_other_defaults(monkeypatch) -> None:
    monkeypatch.setenv("JOBQUEUE_LLM_PRICES", '{"gpt-4o-mini": {"input": 1, "output": 2}}')
    monkeypatch.setenv("JOBQUEUE_LLM_BATCH_DISCOUNT", "0.25")
    price_table.cache_clear()
    try:
        table = price_table()
        assert table.cost_usd("gpt-4o-mini", "sync", 1_000_000, 1_000_000) == pytest.approx(3.0)
        assert table.cost_usd("gpt-4o-mini", "batch", 1_000_000, 1_000_000) == pytest.approx(0.75)
        assert table.cost_usd("text-embedding-3-small", "sync", 1_000_000, 0) == pytest.approx(0.02)
    finally:
        price_table.cache_clear()


def test_a_bad_price_table_is_a_one_line_configuration_error(monkeypatch) -> None:
    monkeypatch.setenv("JOBQUEUE_LLM_PRICES", '{"gpt-4o-mini": {"input": -1}}')
    price_table.cache_clear()
    try:
        with pytest.raises(jobqueue.ConfigurationError, match="JOBQUEUE_LLM_PRICES"):
            price_table()
    finally:
        price_table.cache_clear()


async def test_batched_embedding_jobs_record_their_share_of_the_requests_usage(store, fake_openai, prices, monkeypatch):
    # Long enough that the three jobs of the burst share one request.
    monkeypatch.setenv("JOBQUEUE_PRODUCT_EMBEDDING_BATCH_WAIT", "0.3")
    descriptions = ["Short.", "A longer description of a woollen scarf.", "Glazed stoneware, hand thrown, blue."]
    texts = {}
    for i, description in enumerate(descriptions):
        product = await store.upsert_product(f"p{i}", name=f"Product {i}", price=1000, description=description)
        texts[product.id] = canonical_text(product)
    before = spend_counters("product-embedding", "embed-test")
    handles = await jobqueue.enqueue_product_embeddings(list(texts))
    await run_burst(embedding_settings())
    results = [await h.result(timeout=5) for h in handles]

    (request,) = fake_openai.requests_to("/v1/embeddings")
    reported = request_tokens("/v1/embeddings", request.body)  # what the server put in `usage`
    usages = [r.usage for r in results]
    assert all(u is not None and (u.model, u.lane, u.cached) == ("embed-test", "sync", False) for u in usages)
    assert sum(u.input_tokens for u in usages) == reported
    assert sum(u.requests for u in usages) == pytest.approx(1.0)
    assert all(u.requests == pytest.approx(1 / 3) and u.output_tokens == 0 for u in usages)
    # The longer text carries the larger share of the tokens.
    assert usages[1].input_tokens > usages[0].input_tokens
    for u in usages:
        assert u.cost_usd == pytest.approx(u.input_tokens * EMBED_PRICE["input"] / 1e6)

    counted = delta(spend_counters("product-embedding", "embed-test"), before)
    assert counted == pytest.approx(
        {"requests": 1.0, "input": reported, "output": 0.0, "cost": reported * EMBED_PRICE["input"] / 1e6}
    )
    spend = await spend_summary("product-embedding")
    for window in ("hour", "day"):
        assert (spend[window]["requests"], spend[window]["input_tokens"]) == (1.0, reported)
        assert spend[window]["cost_usd"] == pytest.approx(reported * EMBED_PRICE["input"] / 1e6)
        (row,) = spend[window]["by_model"]
        assert (row["model"], row["lane"]) == ("embed-test", "sync")


async def test_an_enrichment_job_records_its_input_and_output_tokens_and_cost(store, fake_openai, prices):
    await store.upsert_product("p1", name="Stoneware mug", price=1800, description="Glazed.")
    before = spend_counters("product-enrichment", "gpt-test")
    handle = await jobqueue.enqueue_product_enrichment("p1")
    await run_burst(enrichment_settings())
    result = await handle.result(timeout=5)

    (request,) = fake_openai.requests_to("/v1/chat/completions")
    prompt = request_tokens("/v1/chat/completions", request.body)
    assert result.usage is not None
    assert (result.usage.model, result.usage.requests, result.usage.input_tokens) == ("gpt-test", 1.0, prompt)
    assert result.usage.output_tokens > 0
    cost = (prompt * CHAT_PRICE["input"] + result.usage.output_tokens * CHAT_PRICE["output"]) / 1e6
    assert result.usage.cost_usd == pytest.approx(cost)
    counted = delta(spend_counters("product-enrichment", "gpt-test"), before)
    assert counted == pytest.approx(
        {"requests": 1.0, "input": prompt, "output": result.usage.output_tokens, "cost": cost}
    )


async def test_the_batch_lane_accounts_through_record_usage_at_its_discount(redis_client, prices) -> None:
    before = spend_counters("product-embedding", "embed-test", "batch")
    usage = await record_usage(
        redis_client, "product-embedding", LLMUsage(model="embed-test", lane="batch", requests=1, input_tokens=4000)
    )
    assert usage.cost_usd == pytest.approx(4000 * EMBED_PRICE["input"] / 1e6 * 0.5)
    counted = delta(spend_counters("product-embedding", "embed-test", "batch"), before)
    assert counted == pytest.approx({"requests": 1.0, "input": 4000, "output": 0, "cost": usage.cost_usd})
    minute = int(time.time() // 60)
    ttl = await redis_client.ttl(f"jq:product-embedding:llm:m:{minute}")
    assert 0 < ttl <= 2 * 3600


async def test_the_hour_holds_the_last_60_minutes_and_the_day_the_last_24_hours(redis_client, prices) -> None:
    from jobqueue.spend import _add_to_buckets

    now = time.time()
    usage = LLMUsage(model="embed-test", requests=1, input_tokens=100, cost_usd=0.1)
    await _add_to_buckets(redis_client, "product-embedding", usage, now)
    await _add_to_buckets(redis_client, "product-embedding", usage, now - 2 * 3600)  # in the day only
    await _add_to_buckets(redis_client, "product-embedding", usage, now - 30 * 3600)  # in neither
    spend = await spend_summary("product-embedding", now=now)
    assert (spend["hour"]["requests"], spend["hour"]["input_tokens"]) == (1.0, 100)
    assert (spend["day"]["requests"], spend["day"]["input_tokens"]) == (2.0, 200)
    assert spend["day"]["cost_usd"] == pytest.approx(0.2)
    assert (await spend_summary("taste-profile-embedding", now=now))["day"]["requests"] == 0


async def test_the_dashboard_overview_shows_each_queues_spend(redis_client, prices) -> None:
    usage = LLMUsage(model="gpt-test", requests=1, input_tokens=30, output_tokens=12)
    await record_usage(redis_client, "product-enrichment", usage)
    transport = httpx.ASGITransport(app=create_app(token="t0ken"))
    async with httpx.AsyncClient(transport=transport, base_url="http://dash.test") as client:
        body = (await client.get("/api/queues", headers={"Authorization": "Bearer t0ken"})).json()
    spend = {q["name"]: q["llm"] for q in body["queues"]}
    cost = (30 * CHAT_PRICE["input"] + 12 * CHAT_PRICE["output"]) / 1e6
    for window in ("hour", "day"):
        assert spend["product-enrichment"][window]["input_tokens"] == 30
        assert spend["product-enrichment"][window]["output_tokens"] == 12
        assert spend["product-enrichment"][window]["cost_usd"] == pytest.approx(cost)
        assert spend["reminder-dispatch"][window]["requests"] == 0


def test_jobqueue_stats_shows_tokens_and_cost_per_queue(redis_url, prices, capsys) -> None:
    async def spend() -> None:
        import redis.asyncio as aioredis

        client = aioredis.Redis.from_url(redis_url)
        try:
            usage = LLMUsage(model="embed-test", requests=2, input_tokens=1500)
            await record_usage(client, "taste-profile-embedding", usage)
        finally:
            await client.aclose()

    def jq(*args: str) -> str:
        with pytest.raises(SystemExit) as exited:
            run(list(args))
        assert exited.value.code == 0
        return capsys.readouterr().out

    asyncio.run(spend())
    rows = {row["name"]: row for row in json.loads(jq("stats", "--json"))}
    assert rows["taste-profile-embedding"]["llm"]["hour"]["input_tokens"] == 1500
    assert rows["taste-profile-embedding"]["llm"]["day"]["cost_usd"] == pytest.approx(1500 * 1000 / 1e6)
    table = jq("stats")
    line = next(line for line in table.splitlines() if "taste-profile-embedding" in line and "$" in line)
    assert "1,500" in line and "$1.5000" in line
