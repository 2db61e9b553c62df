"""Taste-profile embeddings and curated collections, end to end."""

import asyncio
import datetime as dt
import itertools
import json
import math
import random
import threading
import time

import numpy as np
import pytest

import jobqueue
from jobqueue import CuratedCollectionsJobPayload, JobFailedError
from jobqueue.constants import DEFAULT_WORKER_LEASE_S
from tests.support.fixtures import DIMS
from tests.support.waiting import WorkerProcess
from tests.support.workers import make_worker, progress_steps, run_burst
from workers.jobs.collections import CANDIDATES_PER_SLOT, MAX_CANDIDATES, group_products, group_products_in_thread
from workers.providers.store import ProductRecord
from workers.settings import collections_settings, taste_profile_settings

DAY = dt.date(2025, 12, 21)


async def test_taste_profile_is_embedded_once(store, fake_openai):
    await store.upsert_taste_profile("tp1", user_id="u1", answers={"likes": ["tea", "books"], "budget": 30})
    handle = await jobqueue.enqueue_taste_profile_embedding("tp1", "u1", triggered_by="profile.completed")
    await run_burst(taste_profile_settings())
    result = await handle.result(timeout=5)
    assert (result.status, result.dims, result.model) == ("processed", DIMS, "embed-test")
    assert len((await store.get_taste_profile("tp1")).vector) == DIMS
    again = await jobqueue.enqueue_taste_profile_embedding("tp1", "u1")
    await run_burst(taste_profile_settings())
    assert (await again.result(timeout=5)).reason == "vector exists"
    (request,) = fake_openai.requests_to("/v1/embeddings")
    assert request.body["input"] == ["budget: 30\nlikes: tea, books"]


async def test_taste_profile_of_another_user_fails_at_once(store):
    await store.upsert_taste_profile("tp1", user_id="u1", answers={"likes": "tea"})
    handle = await jobqueue.enqueue_taste_profile_embedding("tp1", "intruder")
    await run_burst(taste_profile_settings())
    with pytest.raises(JobFailedError, match="does not belong"):
        await handle.result(timeout=5)


def _vector(axis: int, jitter: float) -> list[float]:
    v = [0.0] * DIMS
    v[axis] = 1.0
    v[(axis + 1) % DIMS] = jitter
    return v


async def _catalogue(store):
    # Two clear clusters by embedding (axis 0: tea things, axis 4: garden things), interleaved ids.
    for i in range(4):
        await store.upsert_product(
            f"a{i}", name=f"Tea {i}", price=1000 + i, category="tea", embedding=_vector(0, i / 10)
        )
        await store.upsert_product(
            f"b{i}", name=f"Garden {i}", price=2000 + i, category="garden", embedding=_vector(4, i / 10)
        )
    await store.upsert_product("x1", name="Pricey", price=99_000, category="luxury", is_featured=True)


async def test_collections_group_products_by_embedding_similarity(store, fake_openai):
    await _catalogue(store)
    titles = {"collections": [{"title": "Tea time", "description": "Brews."}, {"title": "Green", "description": "."}]}
    fake_openai.responder = lambda request: json.dumps(titles)
    handle = await jobqueue.enqueue_curated_collections(
        "home", DAY, collections_count=2, products_per_collection=4, filters={"max_price": 5000}
    )
    await run_burst(collections_settings())
    result = await handle.result(timeout=5)
    assert result.status == "processed" and len(result.collection_ids) == 2
    stored = await store.get_collections("home", DAY)
    assert [c.title for c in stored] == ["Tea time", "Green"]
    assert [sorted(c.product_ids) for c in stored] == [["a0", "a1", "a2", "a3"], ["b0", "b1", "b2", "b3"]]
    again = await jobqueue.enqueue_curated_collections("home", DAY)
    await run_burst(collections_settings())
    skipped = await again.result(timeout=5)
    assert skipped.status == "skipped" and skipped.collection_ids == result.collection_ids
    assert len(fake_openai.requests_to("/v1/chat/completions")) == 1


async def test_collections_report_their_steps_to_other_processes(store, fake_openai):
    await _catalogue(store)
    named = threading.Event()  # the fake LLM holds the titles request until the test has looked
    titles = {"collections": [{"title": "Tea time", "description": "Brews."}, {"title": "Green", "description": "."}]}
    fake_openai.responder = lambda request: named.wait(20) and json.dumps(titles)
    handle = await jobqueue.enqueue_curated_collections(
        "home", DAY, collections_count=2, products_per_collection=4, filters={"max_price": 5000}
    )
    queue = jobqueue.curated_collections_queue
    try:
        with WorkerProcess("workers.CollectionsSettings") as worker:

            async def naming():
                job = await queue.get_job(handle.job_id)
                progress = job.progress if job is not None and job.state == "active" else None
                return progress if isinstance(progress, dict) and progress["step"] == "naming" else None

            progress = await worker.wait_for(naming, timeout=30, what="the job to report its naming step")
            assert progress == {"step": "naming", "step_number": 3, "steps": 4, "percent": 50}
            named.set()
            assert (await handle.result(timeout=30)).status == "processed"
    finally:
        named.set()
    assert await progress_steps(queue, handle.job_id) == ["reading", "grouping", "naming", "storing", "done"]
    job = await queue.get_job(handle.job_id)
    assert job.progress == {"step": "done", "step_number": 4, "steps": 4, "percent": 100}


async def test_collections_without_an_llm_use_category_titles(store, no_llm):
    await store.upsert_product("t1", name="Teapot", price=1500, category="tea")
    await store.upsert_product("t2", name="Cups", price=1200, category="tea")
    await store.upsert_product("g1", name="Trowel", price=900, category="garden")
    handle = await jobqueue.enqueue_curated_collections("discovery", DAY, products_per_collection=2)
    await run_burst(collections_settings())
    assert (await handle.result(timeout=5)).status == "processed"
    stored = await store.get_collections("discovery", DAY)
    assert [(c.title, sorted(c.product_ids)) for c in stored] == [("Garden picks", ["g1"]), ("Tea picks", ["t1", "t2"])]


async def test_collections_with_no_matching_products_store_nothing(store):
    await _catalogue(store)
    handle = await jobqueue.enqueue_curated_collections("occasion", DAY, filters={"min_price": 500_000})
    await run_burst(collections_settings())
    assert (await handle.result(timeout=5)).reason == "no products match the filters"
    assert not await store.collections_exist("occasion", DAY)


def test_grouping_is_deterministic_and_bounded():
    now = dt.datetime.now(dt.UTC)
    products = [
        ProductRecord(id=f"p{i}", name="n", price=1, embedding=_vector(i % 2 * 4, i / 100), updated_at=now)
        for i in range(10)
    ]
    groups = group_products(products, size=3, count=2)
    assert [[p.id for p in g] for g in groups] == [["p0", "p2", "p4"], ["p1", "p3", "p5"]]
    assert group_products([], size=3, count=2) == []


def _pure_python_grouping(products, size, count):
    """The definition: seeds in input order, each with its most similar free products (ties by id)."""

    def cosine(a, b):
        norm = math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b))
        return sum(x * y for x, y in zip(a, b, strict=True)) / norm if norm else 0.0

    groups, remaining = [], [p for p in products if p.embedding]
    while remaining and len(groups) < count:
        seed = remaining[0]
        nearest = sorted(remaining[1:], key=lambda p: (-cosine(seed.embedding, p.embedding), p.id))[: size - 1]
        groups.append([seed, *nearest])
        remaining = [p for p in remaining[1:] if p not in nearest]
    no_vector = sorted((p for p in products if not p.embedding), key=lambda p: p.category or "")
    for _, items in itertools.groupby(no_vector, key=lambda p: p.category or ""):
        items = list(items)
        groups += [items[i : i + size] for i in range(0, len(items), size)]
    return groups[:count]


@pytest.mark.parametrize(("size", "count"), [(1, 5), (3, 10), (7, 40), (14, 200)])
def test_vectorised_grouping_matches_the_pure_python_definition(size, count):
    # Small integer components make every cosine exact in both versions, so ties are real ties and
    # their order (by id) is checked too; zero vectors, duplicates and products without vectors included.
    rng = random.Random(size * 1000 + count)
    now = dt.datetime.now(dt.UTC)
    products = []
    for i in rng.sample(range(300), 150):
        kind = i % 10
        if kind == 0:
            embedding = None
        elif kind == 1:
            embedding = [0.0] * 6
        elif kind == 2 and products and products[-1].embedding:
            embedding = list(products[-1].embedding)
        else:
            embedding = [float(rng.randint(-2, 2)) for _ in range(6)]
        category = rng.choice(["tea", "garden", None])
        products.append(
            ProductRecord(id=f"p{i}", name="n", price=1, category=category, embedding=embedding, updated_at=now)
        )
    expected = [[p.id for p in g] for g in _pure_python_grouping(products, size, count)]
    assert [[p.id for p in g] for g in group_products(products, size, count)] == expected


def test_vectors_of_different_lengths_are_refused_with_a_clear_error():
    now = dt.datetime.now(dt.UTC)
    products = [
        ProductRecord(id="a", name="n", price=1, embedding=[1.0, 0.0], updated_at=now),
        ProductRecord(id="b", name="n", price=1, embedding=[1.0, 0.0, 0.0], updated_at=now),
    ]
    with pytest.raises(ValueError, match=r"differ in length \(\[2, 3\]\)"):
        group_products(products, size=2, count=1)


@pytest.mark.parametrize("products_per_collection", [14, 100])
async def test_the_largest_valid_request_groups_inside_the_lease_while_the_loop_keeps_running(products_per_collection):
    # The most pairs to compare: 50 collections of 14 read 2,000 candidates (the cap) and compare
    # about 83,000 pairs of 1,536-dim vectors; 50 x 100 is the largest request by size.
    payload = CuratedCollectionsJobPayload(
        surface="home", date=DAY, collections_count=50, products_per_collection=products_per_collection
    )
    candidates = min(payload.collections_count * payload.products_per_collection * CANDIDATES_PER_SLOT, MAX_CANDIDATES)
    vectors = np.random.default_rng(13).standard_normal((candidates, 1536)).tolist()
    now = dt.datetime.now(dt.UTC)
    products = [
        ProductRecord(id=f"p{i:04d}", name="n", price=1, embedding=v, updated_at=now) for i, v in enumerate(vectors)
    ]
    loop = asyncio.get_running_loop()
    ticks, longest_gap = 0, 0.0

    async def ticker() -> None:
        # Stands for the worker's heartbeat and its other jobs: it must keep getting the loop.
        nonlocal ticks, longest_gap
        last = loop.time()
        while True:
            await asyncio.sleep(0)
            ticks += 1
            longest_gap = max(longest_gap, loop.time() - last)
            last = loop.time()

    ticking = asyncio.create_task(ticker())
    started = time.perf_counter()
    try:
        groups = await group_products_in_thread(products, payload.products_per_collection, payload.collections_count)
    finally:
        elapsed = time.perf_counter() - started
        ticking.cancel()
    print(
        f"\ngrouping {candidates} products x 1536 dims into {len(groups)} x {payload.products_per_collection}: "
        f"{elapsed:.2f} s (lease {DEFAULT_WORKER_LEASE_S:.0f} s); loop ticked {ticks} times, longest gap "
        f"{longest_gap * 1000:.1f} ms"
    )
    expected_groups = min(payload.collections_count, candidates // payload.products_per_collection)
    assert len(groups) == expected_groups
    assert all(len(g) == payload.products_per_collection for g in groups)
    placed = [p.id for g in groups for p in g]
    assert len(set(placed)) == len(placed)
    assert ticks > 0 and longest_gap < DEFAULT_WORKER_LEASE_S
    assert elapsed < DEFAULT_WORKER_LEASE_S


async def test_cron_job_is_registered_daily_and_enqueues_the_three_surfaces(store, monkeypatch, redis_client):
    monkeypatch.setenv("COLLECTIONS_CRON_HOUR", "5")
    settings = collections_settings()
    (cron_job,) = settings.cron_jobs
    assert (cron_job.name, cron_job.hour, cron_job.minute, cron_job.unique) == ("daily_curated_collections", 5, 0, True)
    assert settings.timezone == dt.UTC
    # Run it the way arq does: a worker whose cron job is due now enqueues it, then runs it.
    cron_job.run_at_startup = True
    worker = make_worker(settings, max_burst_jobs=1)
    try:
        await worker.async_run()
    finally:
        await worker.close()
    today = dt.datetime.now(dt.UTC).date().isoformat()
    waiting = await jobqueue.curated_collections_queue.get_jobs("waiting")
    assert sorted(j.job_id for j in waiting) == sorted(
        f"curated-collections:{s}:{today}" for s in ("home", "discovery", "occasion")
    )
    assert {j.payload["triggered_by"] for j in waiting} == {"scheduled"}
    # arq ran its cron job itself: the claim that also STARTs our runs left it alone.
    queue = jobqueue.curated_collections_queue
    assert (await queue.get_job_counts())["active"] == 0
    assert await redis_client.hlen(queue.keys.active) == 0
    assert [k async for k in redis_client.scan_iter(f"{queue.keys.base}info:cron:*")] == []
