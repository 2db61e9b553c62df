"""SqlStore against real databases: a SQLite file, and PostgreSQL when it answers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy.engine import make_url

from jobqueue.errors import ConfigurationError, EntityNotFoundError, RetryableJobError
from tests.support.databases import drop_jq_tables
from workers.providers.store import NewCollection, SqlStore

DAY = date(2025, 12, 21)


@pytest.fixture
async def open_store(database_url: str) -> AsyncIterator[Callable[[], SqlStore]]:
    """Opens stores on the test database, each with its own engine, like separate workers."""
    is_pg = make_url(database_url).get_backend_name() == "postgresql"
    if is_pg:
        await drop_jq_tables(make_url(database_url))
    opened: list[SqlStore] = []

    def open_() -> SqlStore:
        opened.append(SqlStore(database_url))
        return opened[-1]

    try:
        yield open_
    finally:
        for store in opened:
            await store.aclose()
        if is_pg:
            await drop_jq_tables(make_url(database_url))


@pytest.fixture
def store(open_store: Callable[[], SqlStore]) -> SqlStore:
    return open_store()


async def _gather(*calls: Awaitable):
    return await asyncio.gather(*calls)


# schema and lifecycle


async def test_concurrent_first_use_by_several_stores_creates_the_tables_once(open_store):
    stores = [open_store() for _ in range(5)]
    await _gather(*(s.ensure_schema() for s in stores))
    await _gather(*(s.ensure_schema() for s in stores))
    assert [await s.get_product("nope") for s in stores] == [None] * 5


async def test_aclose_is_safe_twice_and_the_store_refuses_use_afterwards(store):
    await store.ensure_schema()
    await store.aclose()
    await store.aclose()
    with pytest.raises(RuntimeError, match="closed"):
        await store.get_product("p1")


def test_unsupported_or_malformed_database_url_is_a_configuration_error():
    with pytest.raises(ConfigurationError, match="DATABASE_URL"):
        SqlStore("mysql+aiomysql://user@localhost/db")
    with pytest.raises(ConfigurationError, match="DATABASE_URL"):
        SqlStore("not a url")


async def test_unreachable_database_is_retryable_and_the_message_hides_the_password():
    store = SqlStore("postgresql://user:hunter2@127.0.0.1:1/nowhere")
    try:
        with pytest.raises(RetryableJobError, match="database unavailable") as info:
            await store.get_product("p1")
        assert "hunter2" not in str(info.value)
    finally:
        await store.aclose()


# products


async def test_upserted_product_reads_back_with_an_aware_timestamp(store):
    await store.upsert_product("p1", name="Mug", price=1299, tags=["kitchen"], category="home")
    product = await store.get_product("p1")
    assert product is not None
    assert (product.name, product.price, product.tags, product.category) == ("Mug", 1299, ["kitchen"], "home")
    assert product.embedding is None and product.enrichment is None and product.enrichment_version == 0
    assert product.updated_at.tzinfo is not None and product.updated_at.utcoffset() == timedelta(0)
    assert await store.get_product("missing") is None


async def test_save_product_embedding_stores_vector_hash_and_model(store):
    source = await store.upsert_product("p1", name="Mug", price=1299)
    assert await store.save_product_embedding(
        "p1", [0.25, -1.5, 3.0], "hash-1", "text-embedding-3-small", source=source
    )
    product = await store.get_product("p1")
    assert (product.embedding, product.text_hash, product.embedding_model) == (
        [0.25, -1.5, 3.0],
        "hash-1",
        "text-embedding-3-small",
    )
    with pytest.raises(EntityNotFoundError):
        await store.save_product_embedding("missing", [1.0], "h", "m", source=source)


async def test_save_product_enrichment_never_goes_back_a_version(store):
    source = await store.upsert_product("p1", name="Mug", price=1299)
    assert await store.save_product_enrichment("p1", {"style": "modern"}, 2, "prompt-v2", source=source) is True
    assert await store.save_product_enrichment("p1", {"style": "old"}, 1, "prompt-v1", source=source) is False
    product = await store.get_product("p1")
    assert (product.enrichment, product.enrichment_version, product.prompt_version) == (
        {"style": "modern"},
        2,
        "prompt-v2",
    )
    with pytest.raises(EntityNotFoundError):
        await store.save_product_enrichment("missing", {}, 1, None, source=source)


async def test_find_products_filters_by_featured_and_price_in_id_order(store):
    for product_id, price, featured in [("c", 500, True), ("a", 1500, True), ("b", 2500, False)]:
        await store.upsert_product(product_id, name=product_id, price=price, is_featured=featured)

    async def ids(**filters) -> list[str]:
        return [p.id for p in await store.find_products(**filters)]

    assert await ids(limit=10) == ["a", "b", "c"]
    assert await ids(is_featured=True, limit=10) == ["a", "c"]
    assert await ids(is_featured=False, limit=10) == ["b"]
    assert await ids(min_price=1000, limit=10) == ["a", "b"]
    assert await ids(max_price=1500, limit=10) == ["a", "c"]
    assert await ids(is_featured=True, min_price=600, max_price=2000, limit=10) == ["a"]
    assert await ids(limit=2) == ["a", "b"]


# taste profiles


async def test_taste_profile_round_trip_and_vector(store):
    await store.upsert_taste_profile("tp1", user_id="u1", recipient_id="r1", answers={"likes": ["tea"]})
    profile = await store.get_taste_profile("tp1")
    assert (profile.user_id, profile.recipient_id, profile.answers, profile.vector) == (
        "u1",
        "r1",
        {"likes": ["tea"]},
        None,
    )
    assert await store.save_taste_profile_vector("tp1", [0.5, 0.5], "emb-model", source=profile)
    profile = await store.get_taste_profile("tp1")
    assert (profile.vector, profile.vector_model) == ([0.5, 0.5], "emb-model")
    assert await store.get_taste_profile("missing") is None
    with pytest.raises(EntityNotFoundError):
        await store.save_taste_profile_vector("missing", [1.0], "m", source=profile)


# curated collections


async def test_collections_are_stored_once_per_surface_and_date(store):
    assert await store.collections_exist("home", DAY) is False
    ids = await store.save_collections(
        "home", DAY, [NewCollection("Cosy", "for winter", ["p1", "p2"]), ("Gifts", None, ["p3"])]
    )
    assert len(ids) == 2
    assert await store.collections_exist("home", "2025-12-21") is True
    assert await store.collections_exist("discovery", DAY) is False
    assert await store.save_collections("home", DAY, [("Other", None, ["p9"])]) == ids
    stored = await store.get_collections("home", DAY)
    assert [(c.id, c.position, c.title, c.description, c.product_ids) for c in stored] == [
        (ids[0], 0, "Cosy", "for winter", ["p1", "p2"]),
        (ids[1], 1, "Gifts", None, ["p3"]),
    ]
    assert stored[0].date == DAY and stored[0].created_at.tzinfo is not None


async def test_save_collections_is_stored_once_under_concurrent_writers(open_store):
    stores = [open_store() for _ in range(5)]
    results = await _gather(
        *(
            s.save_collections("home", DAY, [(f"writer {n} #{i}", None, [f"p{i}"]) for i in range(4)])
            for n, s in enumerate(stores)
        )
    )
    assert all(ids == results[0] for ids in results)
    stored = await stores[0].get_collections("home", DAY)
    assert [c.id for c in stored] == results[0]
    assert len({c.title.split(" #")[0] for c in stored}) == 1, "rows from more than one writer"


# notification schedules


async def test_claim_moves_pending_to_sending_once(store):
    await store.upsert_schedule("s1", user_id="u1", channel="PUSH")
    claimed = await store.claim_schedule("s1", stale_after=60)
    assert (claimed.status, claimed.attempts) == ("SENDING", 1)
    assert claimed.claimed_at is not None and claimed.claimed_at.tzinfo is not None
    assert await store.claim_schedule("s1", stale_after=60) is None
    assert (await store.get_schedule("s1")).attempts == 1


async def test_claim_is_exclusive_under_20_concurrent_claimers(open_store):
    stores = [open_store() for _ in range(4)]
    await stores[0].upsert_schedule("s1", user_id="u1", channel="PUSH")
    results = await _gather(*(s.claim_schedule("s1", stale_after=60) for s in stores for _ in range(5)))
    winners = [r for r in results if r is not None]
    assert len(results) == 20 and len(winners) == 1
    assert (await stores[0].get_schedule("s1")).attempts == 1


async def test_stale_sending_schedule_is_reclaimed_but_a_fresh_one_is_not(store):
    now = datetime.now(UTC)
    await store.upsert_schedule("stale", user_id="u1", channel="SMS", status="SENDING", attempts=1,
                                claimed_at=now - timedelta(seconds=120))  # fmt: skip
    await store.upsert_schedule("fresh", user_id="u1", channel="SMS", status="SENDING", attempts=1,
                                claimed_at=now)  # fmt: skip
    reclaimed = await store.claim_schedule("stale", stale_after=60)
    assert (reclaimed.status, reclaimed.attempts) == ("SENDING", 2)
    assert reclaimed.claimed_at > now - timedelta(seconds=120)
    assert await store.claim_schedule("fresh", stale_after=60) is None


@pytest.mark.parametrize("status", ["SENT", "CANCELLED", "FAILED"])
async def test_finished_schedules_are_not_claimable(store, status):
    await store.upsert_schedule("s1", user_id="u1", channel="EMAIL", status=status)
    assert await store.claim_schedule("s1", stale_after=0) is None
    assert (await store.get_schedule("s1")).status == status


async def test_missing_schedule_is_not_found(store):
    assert await store.get_schedule("missing") is None
    with pytest.raises(EntityNotFoundError):
        await store.claim_schedule("missing", stale_after=60)
    with pytest.raises(EntityNotFoundError):
        await store.mark_schedule_sent("missing")
    with pytest.raises(EntityNotFoundError):
        await store.release_schedule("missing", "boom")


async def test_released_schedule_can_be_claimed_again(store):
    await store.upsert_schedule("s1", user_id="u1", channel="PUSH")
    await store.claim_schedule("s1", stale_after=60)
    assert await store.release_schedule("s1", "webhook answered 503") is True
    released = await store.get_schedule("s1")
    assert (released.status, released.last_error, released.claimed_at) == (
        "PENDING",
        "webhook answered 503",
        None,
    )
    assert await store.release_schedule("s1", "again") is False
    assert (await store.claim_schedule("s1", stale_after=60)).attempts == 2


async def test_mark_sent_and_mark_failed(store):
    await store.upsert_schedule("ok", user_id="u1", channel="PUSH")
    await store.upsert_schedule("bad", user_id="u1", channel="PUSH")
    await store.claim_schedule("ok", stale_after=60)
    await store.claim_schedule("bad", stale_after=60)
    assert await store.mark_schedule_sent("ok") is True
    sent = await store.get_schedule("ok")
    assert sent.status == "SENT" and sent.sent_at is not None and sent.sent_at.tzinfo is not None
    assert await store.mark_schedule_sent("ok") is False
    assert await store.mark_schedule_failed("ok", "too late") is False
    assert await store.mark_schedule_failed("bad", "webhook answered 400") is True
    failed = await store.get_schedule("bad")
    assert (failed.status, failed.last_error, failed.sent_at) == ("FAILED", "webhook answered 400", None)
