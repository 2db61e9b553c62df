"""Taste-profile embeddings and curated collections, end to end."""

import datetime as dt
import json

import pytest

import jobqueue
from jobqueue import JobFailedError
from tests.support.fixtures import DIMS
from tests.support.workers import make_worker, run_burst
from workers.jobs.collections import group_products
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
    from workers.store import ProductRecord

    now = dt.datetime.now(dt.UTC)
    products = [
        ProductRecord(id=f"p{i}", name="n", price=1, embedding=_vector(i % 2 * 4, i / 100), updated_at=now)
        for i in range(10)
    ]
    groups = group_products(products, size=3, count=2)
    assert [[p.id for p in g] for g in groups] == [["p0", "p2", "p4"], ["p1", "p3", "p5"]]
    assert group_products([], size=3, count=2) == []


async def test_cron_job_is_registered_daily_and_enqueues_the_three_surfaces(store, monkeypatch):
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
