"""A Redis per queue (``JOBQUEUE_<QUEUE>_REDIS_URL``): the five queues spread over three servers the
test starts plus ``REDIS_URL``; enqueue, workers (the real ``arq`` command among them), counts,
events, results, progress, cancel, pause, schedules, rate limits, the dashboard API, the CLI and the
collector all follow each queue's server, and afterwards no key of a queue with a server of its own
is on ``REDIS_URL``."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import logging
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import redis

import jobqueue
from jobqueue import QUEUES, update_progress
from jobqueue.backend._queue_urls import variable_for
from jobqueue.backend.connection import check_queues_health
from jobqueue.cli import run
from jobqueue.collector import render_queue_metrics
from jobqueue.dashboard import create_app
from jobqueue.errors import ConfigurationError, RedisUnavailableError
from jobqueue.settings import get_settings
from tests.support import workers as test_workers
from tests.support.redis_process import RedisProcess
from tests.support.scrape import samples, value
from tests.support.waiting import WorkerProcess, free_port
from tests.support.workers import counts, run_burst
from workers.dev import devstack
from workers.providers.ratelimit import RATE_LIMIT_KEY_PREFIX, RateLimitSettings, rate_limiter_for

RUNS = "jq:test:runs"
TOKEN = "t0ken"
# Queue -> the server it is put on: "shared" is REDIS_URL; b holds two queues. The two jobs of
# enqueue_product_processing land on different servers (a and b).
LAYOUT = {
    "product-embedding": "a",
    "product-enrichment": "b",
    "taste-profile-embedding": "b",
    "curated-collections": "c",
    "reminder-dispatch": "shared",
}


@pytest.fixture(scope="module")
def servers() -> Iterator[dict[str, RedisProcess]]:
    started = {name: RedisProcess() for name in ("a", "b", "c")}
    try:
        for server in started.values():
            server.start()
        yield started
    finally:
        for server in started.values():
            server.stop()


@pytest.fixture
def spread(servers: dict[str, RedisProcess], monkeypatch: pytest.MonkeyPatch) -> dict[str, RedisProcess]:
    """The queues spread as ``LAYOUT`` says, on emptied servers."""
    for server in servers.values():
        server.client().flushall()
    for queue, where in LAYOUT.items():
        if where != "shared":
            monkeypatch.setenv(variable_for(queue), servers[where].url)
    get_settings.cache_clear()
    return servers


def env_of(servers: dict[str, RedisProcess]) -> dict[str, str]:
    return {variable_for(q): servers[w].url for q, w in LAYOUT.items() if w != "shared"}


async def note_run(ctx: dict[str, Any], payload: Any) -> None:
    """A handler for any queue: records the run on the worker's own Redis (its queue's)."""
    await ctx["redis"].rpush(RUNS, json.dumps({"job_id": ctx["job_id"]}))
    if ctx["job_id"].startswith("taste-profile-embedding:"):
        await update_progress(ctx, 50)
    if ctx["job_id"].startswith("product-enrichment:"):
        # What workers.providers.llm does with LLM_RATE_LIMIT_PER_MINUTE: the limit on the worker's Redis.
        limiter = rate_limiter_for(ctx["redis"], "openai", "chat", RateLimitSettings(llm_rate_limit_per_minute=100))
        assert limiter is not None
        await limiter.acquire(timeout=5)


def settings_of(queue: str) -> type:
    return jobqueue.build_worker_settings(queue, note_run, options=test_workers.test_options(concurrency=4))


def runs_on(server: RedisProcess) -> list[str]:
    client = server.client()
    try:
        return [json.loads(r)["job_id"] for r in client.lrange(RUNS, 0, -1)]
    finally:
        client.close()


def keys_on(url: str) -> list[str]:
    client = redis.Redis.from_url(url)
    try:
        return sorted(k.decode() for k in client.scan_iter(count=1000))
    finally:
        client.close()


async def enqueue_one_of_each() -> None:
    await jobqueue.enqueue_product_processing("p1")  # embedding on server a, enrichment on b
    await jobqueue.enqueue_taste_profile_embedding("tp1", "u1")
    await jobqueue.schedule_daily_curated_collections(dt.date(2025, 12, 21))  # three jobs on c
    await jobqueue.enqueue_reminder_dispatch(
        "s1", "u1", "PUSH", {"title": "t", "body": "b", "data": {}}, dt.datetime.now(dt.UTC)
    )


async def test_every_part_of_the_system_follows_each_queues_own_redis(spread, redis_url, short_schedule_slots, caplog):
    a, b, c = spread["a"], spread["b"], spread["c"]
    await enqueue_one_of_each()
    assert await jobqueue.product_embedding_queue.get_job_counts() == counts(waiting=1)
    assert a.client().exists("arq:job:product-embedding:p1", "arq:job:product-enrichment:p1") == 1
    assert b.client().exists("arq:job:product-enrichment:p1") == 1
    assert await jobqueue.curated_collections_queue.get_job_counts() == counts(waiting=3)
    assert [q for q in keys_on(c.url) if q.startswith("arq:job:")] == [
        f"arq:job:curated-collections:{s}:2025-12-21" for s in ("discovery", "home", "occasion")
    ]

    # A schedule lives on its queue's server, and the real `arq` command's worker fires it there.
    await jobqueue.upsert_schedule("perq", "product-embedding", every=0.05, payload={"product_id": "s"}, limit=2)
    assert any(k.startswith("jq:schedules:") for k in keys_on(a.url))
    events = jobqueue.product_embedding_queue.events(since="0")
    worker = WorkerProcess("tests.support.workers.EmbeddingTestSettings", **env_of(spread)).start()
    try:

        async def fired_twice() -> bool:
            (schedule,) = await jobqueue.get_schedules()
            return schedule.fired == 2 and (await jobqueue.product_embedding_queue.get_job_counts())["completed"] == 3

        await worker.wait_for(fired_twice, timeout=20, what="the schedule's two slots and p1 to run on server a")
        result = await jobqueue.product_embedding_queue.wait_for_result("product-embedding:p1", timeout=5)
        assert result.product_id == "p1"
        assert (await anext(events)).name == "added"
        assert f"in jobqueue.worker.Worker, Redis {a.url}" in worker.output()  # its start line says where
    finally:
        await events.aclose()
        worker.stop()

    # The schedule moves to a queue on another server: it leaves server a.
    taste_payload = {"taste_profile_id": "x", "user_id": "u"}
    await jobqueue.upsert_schedule("perq", "taste-profile-embedding", every=3600, payload=taste_payload)
    assert [s.queue for s in await jobqueue.get_schedules()] == ["taste-profile-embedding"]
    assert not any(k.startswith("jq:schedules:def:") for k in keys_on(a.url))
    assert await jobqueue.remove_schedule("perq") is True
    assert await jobqueue.get_schedules() == []

    # Pause and cancel on server c; in-process workers of the other queues run on their servers.
    await jobqueue.curated_collections_queue.pause()
    assert c.client().exists("jq:curated-collections:paused") == 1
    await jobqueue.curated_collections_queue.cancel_job("curated-collections:home:2025-12-21", "not needed")
    assert await jobqueue.curated_collections_queue.get_job_counts() == counts(paused=2, failed=1)
    await jobqueue.curated_collections_queue.resume()
    with caplog.at_level(logging.WARNING, logger="workers"):
        for queue in QUEUES:
            if queue != "product-embedding":
                await run_burst(settings_of(queue))
    assert "is counted on each of" in caplog.text  # enrichment (b) and collections (c) share the chat limit
    slots = [j for j in runs_on(a) if j.startswith("product-embedding:schedule:perq:")]
    assert len(slots) == 2 and sorted(set(runs_on(a)) - set(slots)) == ["product-embedding:p1"]
    assert sorted(runs_on(b)) == ["product-enrichment:p1", "taste-profile-embedding:tp1"]
    assert sorted(runs_on(c)) == ["curated-collections:discovery:2025-12-21", "curated-collections:occasion:2025-12-21"]
    assert b.client().exists(RATE_LIMIT_KEY_PREFIX + "openai:chat") == 1
    taste = await jobqueue.taste_profile_embedding_queue.get_job("taste-profile-embedding:tp1")
    assert taste is not None and taste.progress == 50

    expected = {
        "product-embedding": counts(completed=3),
        "product-enrichment": counts(completed=1),
        "taste-profile-embedding": counts(completed=1),
        "curated-collections": counts(completed=2, failed=1),
        "reminder-dispatch": counts(completed=1),
    }
    for name, queue in QUEUES.items():
        assert await queue.get_job_counts() == expected[name], name

    # The dashboard API, the collector and the health check read every server.
    transport = httpx.ASGITransport(app=create_app(token=TOKEN))
    async with httpx.AsyncClient(transport=transport, base_url="http://dash.test") as client:
        body = (await client.get("/api/queues", headers={"Authorization": f"Bearer {TOKEN}"})).json()
    assert {q["name"]: q["counts"] for q in body["queues"]} == expected
    assert sorted(s["url"] for s in body["redis_servers"]) == sorted([redis_url, a.url, b.url, c.url])
    assert body["redis_used_memory"] == sum(s["used_memory"] for s in body["redis_servers"])
    page = samples((await render_queue_metrics()).decode())
    for name, kinds in expected.items():
        assert value(page, "jobqueue_queue_jobs", queue=name, state="completed") == kinds["completed"]
    assert value(page, "jobqueue_redis_up") == 1
    assert value(page, "jobqueue_redis_server_used_memory_bytes", server=b.url) > 0
    assert await check_queues_health() is True

    # Only the reminders' keys are on REDIS_URL; each server holds only its own queues' keys.
    shared = [k for k in keys_on(redis_url) if not k.startswith("jq:test:")]  # the handlers' own notes
    assert shared and all("reminder-dispatch" in k for k in shared), shared
    for server, queues in ((a, ("product-embedding",)), (b, ("product-enrichment", "taste-profile-embedding"))):
        for key in keys_on(server.url):
            assert any(q in key for q in queues) or key.startswith(("jq:test:", "jq:ratelimit:", "jq:schedules:")), key


async def test_a_queues_server_down_fails_its_calls_naming_its_url_and_only_its_metrics(spread, redis_url, monkeypatch):
    port = free_port()
    monkeypatch.setenv(variable_for("curated-collections"), f"redis://:s3cret@127.0.0.1:{port}/0")
    get_settings.cache_clear()
    with pytest.raises(RedisUnavailableError) as caught:
        await jobqueue.enqueue_curated_collections("home", "2025-12-21")
    assert caught.value.url == f"redis://***@127.0.0.1:{port}/0" and "s3cret" not in str(caught.value)
    with pytest.raises(RedisUnavailableError, match=f"127.0.0.1:{port}"):
        await jobqueue.schedule_daily_curated_collections()
    await jobqueue.enqueue_product_embedding("still-fine")  # the other queues' servers are up

    assert await check_queues_health() is False
    page = samples((await render_queue_metrics()).decode())
    assert value(page, "jobqueue_redis_up") == 0
    assert value(page, "jobqueue_queue_redis_up", queue="curated-collections") == 0
    assert value(page, "jobqueue_queue_redis_up", queue="product-embedding") == 1
    assert value(page, "jobqueue_queue_jobs", queue="product-embedding", state="waiting") == 1
    assert not any(
        name == "jobqueue_queue_jobs" and ("queue", "curated-collections") in labels for name, labels in page
    )


def test_a_malformed_per_queue_url_is_refused_before_anything_is_written(monkeypatch, redis_url):
    monkeypatch.setenv("JOBQUEUE_REMINDER_DISPATCH_REDIS_URL", "http://:s3cret@cache:6379")
    get_settings.cache_clear()
    with pytest.raises(ConfigurationError, match="JOBQUEUE_REMINDER_DISPATCH_REDIS_URL") as caught:
        asyncio.run(jobqueue.enqueue_product_embedding("p1"))
    assert "s3cret" not in str(caught.value) and "redis://" in str(caught.value)
    assert keys_on(redis_url) == []


def test_a_variable_naming_no_queue_is_refused(monkeypatch, redis_url):
    monkeypatch.setenv("JOBQUEUE_PRODUCT_EMBEDING_REDIS_URL", "redis://127.0.0.1:6379/0")
    get_settings.cache_clear()
    with pytest.raises(ConfigurationError, match="JOBQUEUE_PRODUCT_EMBEDING_REDIS_URL names no queue"):
        asyncio.run(jobqueue.enqueue_product_embedding("p1"))
    assert keys_on(redis_url) == []


def test_the_cli_reads_each_queue_from_its_server(spread, capsys):
    asyncio.run(_enqueue_and_close())
    with contextlib.suppress(SystemExit):
        run(["stats", "--json"])
    stats = json.loads(capsys.readouterr().out)
    by_name = {q["name"]: q["counts"] for q in stats} if isinstance(stats, list) else stats
    assert by_name["curated-collections"]["waiting"] == 3
    assert by_name["product-embedding"]["waiting"] == 1
    with contextlib.suppress(SystemExit):
        run(["job", "taste-profile-embedding:tp1", "--json"])
    assert json.loads(capsys.readouterr().out)["state"] == "waiting"
    assert spread["b"].client().exists("arq:job:taste-profile-embedding:tp1") == 1


async def _enqueue_and_close() -> None:
    await enqueue_one_of_each()
    await jobqueue.close_queues()


def test_jobqueue_dev_looks_for_each_worker_on_its_queues_server(spread, redis_url):
    both = ("EmbeddingSettings", "RemindersSettings")
    client = redis.Redis.from_url(redis_url)
    try:
        client.zadd("jq:reminder-dispatch:workers", {"w1": 1})
        client.zadd("jq:product-embedding:workers", {"w2": 1})  # on REDIS_URL: not where it belongs
        assert devstack._workers_up(redis_url, both) is False
        spread["a"].client().zadd("jq:product-embedding:workers", {"w2": 1})
        assert devstack._workers_up(redis_url, both) is True
    finally:
        client.close()
