"""A stale run cannot overwrite a newer run's result in the store.

jobqueue fences a stale run off from Redis with its run token, but a handler left behind after its
cancellation, or stalled past its lease, still reaches the database. Each test runs a job handler
twice, interleaved: run A reads its entity and stalls in the provider; the entity changes and run B
computes from the new data; then A resumes and tries to write. What B computed must stand.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import json
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from jobqueue import (
    CuratedCollectionsJobPayload,
    PermanentJobError,
    ProductEmbeddingJobPayload,
    ProductEnrichmentJobPayload,
    ReminderDispatchJobPayload,
    RetryableJobError,
    TasteProfileEmbeddingJobPayload,
)
from tests.support.fixtures import DIMS
from workers.config import WorkerEnv
from workers.jobs.collections import CollectionTitle, CollectionTitles, curated_collections
from workers.jobs.products import ProductEnrichment, canonical_text, product_embedding, product_enrichment, text_hash
from workers.jobs.reminders import reminder_dispatch
from workers.jobs.taste import profile_text, taste_profile_embedding
from workers.providers.groupcall import ProductEmbeddingIO
from workers.providers.notifier import Notification, NotificationReceipt
from workers.providers.store import ProductRecord
from workers.resources import RESOURCES_KEY, Resources
from workers.testing.fake_openai import FakeOpenAI

DAY = dt.date(2025, 12, 21)
V1 = {"name": "Stoneware mug", "price": 1800, "category": "kitchen", "description": "Glazed."}
V2 = V1 | {"description": "Glazed, now with a gold rim."}
# The newer run starts before the stale one writes, or only after it.
ORDERS = ["newer-run-first", "newer-run-after"]


class Gate:
    """Holds the first call that reaches it until ``release()``: that call is run A's."""

    def __init__(self, *, hold: bool = True) -> None:
        self.entered = asyncio.Event()
        self._open = asyncio.Event()
        self._first = hold

    async def passage(self) -> None:
        if self._first:
            self._first = False
            self.entered.set()
            await self._open.wait()

    def release(self) -> None:
        self._open.set()


class Embedder:
    """The embeddings batcher's interface, with the fake server's deterministic vectors."""

    embedding_model = "embed-test"

    def __init__(self, gate: Gate) -> None:
        self.gate = gate

    async def embed(self, text: str) -> list[float]:
        await self.gate.passage()
        return FakeOpenAI.vector_for(text, DIMS)


def enrichment_of(user_prompt: str) -> dict[str, Any]:
    """What the fake LLM answers for a product prompt: it names the prompt it was given."""
    digest = hashlib.sha256(user_prompt.encode()).hexdigest()[:12]
    return {"summary": f"answer to {digest}", "tags": [], "occasions": [], "recipients": [], "style": None}


class Llm:
    """The provider's ``complete_json`` for enrichments and collection titles."""

    def __init__(self, gate: Gate) -> None:
        self.gate = gate

    async def complete_json(self, system: str, user: str, schema: type, *, schema_name: str) -> Any:
        await self.gate.passage()
        if schema is ProductEnrichment:
            return ProductEnrichment(**enrichment_of(user))
        assert schema is CollectionTitles
        groups = [line for line in user.splitlines() if line[:1].isdigit()]
        return CollectionTitles(collections=[CollectionTitle(title=g, description="") for g in groups])


def context(store, *, gate: Gate | None = None, grouped: bool = False, env: WorkerEnv | None = None, **extra):
    gate = gate or Gate(hold=False)
    res = Resources(store=store, env=env or WorkerEnv(), embedder=Embedder(gate), llm_provider=Llm(gate), **extra)
    if grouped:
        res.product_io = ProductEmbeddingIO(store)
    return {RESOURCES_KEY: res, "last_attempt": False}


async def stalled(coro, gate: Gate) -> asyncio.Task:
    """Run A as a task, returned once it has read its entity and waits on the provider."""
    task = asyncio.create_task(coro)
    await asyncio.wait_for(gate.entered.wait(), timeout=5)
    return task


def product_text(fields: dict[str, Any], pid: str = "p1") -> str:
    return canonical_text(ProductRecord(id=pid, updated_at=dt.datetime.now(dt.UTC), **fields))


# product embedding


@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("grouped", [False, True], ids=["one-write", "grouped-writes"])
async def test_a_stale_embedding_run_cannot_overwrite_the_vector_of_the_newer_text(store, order, grouped):
    await store.upsert_product("p1", **V1)
    gate = Gate()
    ctx = context(store, gate=gate, grouped=grouped)
    payload = ProductEmbeddingJobPayload(product_id="p1")
    try:
        run_a = await stalled(product_embedding(ctx, payload), gate)
        await store.upsert_product("p1", **V2)
        if order == "newer-run-first":
            run_b = await product_embedding(ctx, payload)
        gate.release()
        run_a = await run_a
        if order == "newer-run-after":
            assert (await store.get_product("p1")).embedding is None, "the stale vector landed on the new text"
            run_b = await product_embedding(ctx, payload)
    finally:
        if grouped:
            await ctx[RESOURCES_KEY].product_io.aclose()
    new_text = product_text(V2)
    stored = await store.get_product("p1")
    assert stored.embedding == pytest.approx(FakeOpenAI.vector_for(new_text, DIMS))
    assert stored.text_hash == text_hash(new_text)
    assert (run_b.status, run_b.text_hash) == ("processed", text_hash(new_text))
    assert run_a.status == "skipped" and run_a.text_hash == text_hash(product_text(V1))
    assert "changed" in run_a.reason


async def test_a_price_change_does_not_fence_off_the_embedding(store):
    # The price is not part of the embedded text: the vector of run A is still the right one.
    await store.upsert_product("p1", **V1)
    gate = Gate()
    ctx = context(store, gate=gate)
    run_a = await stalled(product_embedding(ctx, ProductEmbeddingJobPayload(product_id="p1")), gate)
    await store.upsert_product("p1", **V1 | {"price": 2500})
    gate.release()
    assert (await run_a).status == "processed"
    assert (await store.get_product("p1")).text_hash == text_hash(product_text(V1))


# product enrichment


def enrichment_prompt(fields: dict[str, Any]) -> str:
    return product_text(fields) + f"\nprice_pence: {fields['price']}"


@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("change", ["text", "price"])
async def test_a_stale_enrichment_run_cannot_overwrite_the_enrichment_of_the_newer_product(store, order, change):
    newer = V2 if change == "text" else V1 | {"price": 2500}  # the prompt carries the price too
    await store.upsert_product("p1", **V1)
    gate = Gate()
    ctx = context(store, gate=gate)
    payload = ProductEnrichmentJobPayload(product_id="p1", prompt_version="v1")
    run_a = await stalled(product_enrichment(ctx, payload), gate)
    await store.upsert_product("p1", **newer)
    if order == "newer-run-first":
        run_b = await product_enrichment(ctx, payload)
    gate.release()
    run_a = await run_a
    if order == "newer-run-after":
        run_b = await product_enrichment(ctx, payload)
    stored = await store.get_product("p1")
    assert stored.enrichment == enrichment_of(enrichment_prompt(newer))
    assert (stored.enrichment_version, stored.prompt_version) == (1, "v1")
    assert run_b.status == "processed", run_b.reason
    assert run_a.status == "skipped" and "changed" in run_a.reason


async def test_a_stale_enrichment_of_an_older_version_cannot_overwrite_a_newer_version(store):
    # A worker still on ENRICHMENT_VERSION=1 stalls while one on version 2 enriches the same text.
    await store.upsert_product("p1", **V1)
    gate = Gate()
    payload = ProductEnrichmentJobPayload(product_id="p1")
    run_a = await stalled(product_enrichment(context(store, gate=gate), payload), gate)
    run_b = await product_enrichment(context(store, env=WorkerEnv(enrichment_version=2)), payload)
    gate.release()
    run_a = await run_a
    assert (run_b.status, run_b.enrichment_version) == ("processed", 2)
    assert run_a.status == "skipped"
    assert (await store.get_product("p1")).enrichment_version == 2


# the product fence in the store

PRODUCT = {"name": "Mug", "price": 1800, "description": "Glazed.", "category": "kitchen", "brand": None}
PRODUCT |= {"tags": ["mug", "ceramic"], "is_featured": False}
# One change per field a host app (or seeding) writes; the rest are written by the jobs.
CHANGES = {"name": "Teapot", "description": "Cast iron.", "category": None, "brand": "Hearth & Co"}
CHANGES |= {"tags": ["mug", "gift"], "price": 2500, "is_featured": True}
JOB_FIELDS = {"id", "updated_at", "text_hash", "embedding", "embedding_model"}
JOB_FIELDS |= {"enrichment", "enrichment_version", "prompt_version"}


def test_every_product_field_is_checked_against_the_fence():
    assert set(ProductRecord.model_fields) - JOB_FIELDS == set(CHANGES), "add the new field to CHANGES"


@pytest.mark.parametrize("field", sorted(CHANGES))
async def test_a_product_save_is_kept_out_exactly_when_its_input_changed(store, field):
    source = await store.upsert_product("p1", **PRODUCT)
    await store.upsert_product("p1", **PRODUCT | {field: CHANGES[field]})
    changed = await store.get_product("p1")
    text_changed = canonical_text(changed) != canonical_text(source)
    prompt_changed = text_changed or changed.price != source.price
    embedded = await store.save_product_embedding("p1", [1.0], "h", "m", source=source)
    enriched = await store.save_product_enrichment("p1", {"summary": "s"}, 1, None, source=source)
    assert (embedded, enriched) == (not text_changed, not prompt_changed)
    stored = await store.get_product("p1")
    assert (stored.embedding is not None, stored.enrichment is not None) == (embedded, enriched)


async def test_grouped_embedding_writes_say_which_rows_the_fence_kept_out(store):
    old_a, old_b = [await store.upsert_product(pid, **PRODUCT) for pid in ("a", "b")]
    new_a, _ = [await store.upsert_product(pid, **PRODUCT | {"name": "Teapot"}) for pid in ("a", "b")]
    rows = [("a", [1.0], "h-old", "m", old_a), ("a", [2.0], "h-new", "m", new_a), ("a", [3.0], "h-old", "m", old_a)]
    rows += [("ghost", [4.0], "h", "m", old_a.model_copy(update={"id": "ghost"})), ("b", [5.0], "h-old", "m", old_b)]
    assert await store.save_product_embeddings(rows) == [False, True, False, None, False]
    stored = await store.get_products(["a", "b"])
    assert [(stored[pid].embedding, stored[pid].text_hash) for pid in ("a", "b")] == [([2.0], "h-new"), (None, None)]


async def test_json_written_by_another_serializer_still_passes_the_fence(store):
    # SQLite keeps JSON as text: spaces and \u escapes (the json module's defaults) must not count
    # as a change. PostgreSQL parses JSONB, so there the text never mattered.
    source = await store.upsert_product("p1", **PRODUCT | {"tags": ["café", "mug"]})
    if make_url(store.url).get_backend_name() == "sqlite":
        async with store._engine.begin() as conn:
            raw = json.dumps(source.tags)  # '["caf\\u00e9", "mug"]'
            await conn.execute(text("UPDATE jq_products SET tags = :raw WHERE id = 'p1'"), {"raw": raw})
    source = await store.get_product("p1")
    assert await store.save_product_embedding("p1", [1.0], "h", "m", source=source)


# taste-profile embedding

ANSWERS_1 = {"likes": ["tea", "books"], "budget": 30}
ANSWERS_2 = {"likes": ["gardening"], "budget": 50}


@pytest.mark.parametrize("order", ORDERS)
async def test_a_stale_taste_profile_run_cannot_overwrite_the_vector_of_the_newer_answers(store, order):
    await store.upsert_taste_profile("tp1", user_id="u1", answers=ANSWERS_1)
    gate = Gate()
    ctx = context(store, gate=gate)
    payload = TasteProfileEmbeddingJobPayload(taste_profile_id="tp1", user_id="u1")
    run_a = await stalled(taste_profile_embedding(ctx, payload), gate)
    await store.upsert_taste_profile("tp1", user_id="u1", answers=ANSWERS_2)
    if order == "newer-run-first":
        run_b = await taste_profile_embedding(ctx, payload)
    gate.release()
    run_a = await run_a
    if order == "newer-run-after":
        # Before the fence, run A's vector landed here and run B then skipped: "vector exists".
        run_b = await taste_profile_embedding(ctx, payload)
    stored = await store.get_taste_profile("tp1")
    assert stored.vector == pytest.approx(FakeOpenAI.vector_for(profile_text(ANSWERS_2), DIMS))
    assert run_b.status == "processed", run_b.reason
    assert run_a.status == "skipped" and "changed" in run_a.reason


# curated collections: stored once per surface and date, so a later writer never replaces them


async def test_a_stale_collections_run_cannot_replace_the_collections_a_newer_run_stored(store):
    for pid in ("a1", "a2"):
        await store.upsert_product(pid, name=f"Tea {pid}", price=1000, category="tea")
    gate = Gate()
    payload = CuratedCollectionsJobPayload(surface="home", date=DAY, products_per_collection=2)
    run_a = await stalled(curated_collections(context(store, gate=gate), payload), gate)
    for pid in ("b1", "b2"):
        await store.upsert_product(pid, name=f"Garden {pid}", price=900, category="garden")
    run_b = await curated_collections(context(store), payload)
    gate.release()
    run_a = await run_a
    stored = await store.get_collections("home", DAY)
    assert [c.id for c in stored] == run_b.collection_ids == run_a.collection_ids
    # Run B's groups (it saw the garden products too), not run A's single tea group.
    assert [sorted(c.product_ids) for c in stored] == [["b1", "b2"], ["a1", "a2"]]


# reminders: a stale run must not undo the claim of the run that took over


class Notifier:
    """Each send waits until the test settles it with a receipt or an error."""

    def __init__(self) -> None:
        self.calls: list[asyncio.Future[NotificationReceipt]] = []
        self._changed = asyncio.Event()

    async def send(self, notification: Notification) -> NotificationReceipt:
        outcome: asyncio.Future[NotificationReceipt] = asyncio.get_running_loop().create_future()
        self.calls.append(outcome)
        self._changed.set()
        return await outcome

    async def wait_calls(self, count: int) -> None:
        while len(self.calls) < count:
            self._changed.clear()
            await asyncio.wait_for(self._changed.wait(), timeout=5)

    def settle(self, index: int, error: Exception | None = None) -> None:
        if error is None:
            self.calls[index].set_result(NotificationReceipt(schedule_id="s1", channel="PUSH", status_code=200))
        else:
            self.calls[index].set_exception(error)


REMINDER = ReminderDispatchJobPayload(
    schedule_id="s1",
    user_id="u1",
    channel="PUSH",
    content={"title": "Birthday", "body": "Tomorrow!"},
    scheduled_for="2025-12-22T09:00:00Z",
)


async def _two_runs_sending(store) -> tuple[Notifier, asyncio.Task, asyncio.Task]:
    """Run A claims and stalls in its send; run B finds A's claim stale, claims and sends too."""
    await store.upsert_schedule("s1", user_id="u1", channel="PUSH")
    notifier = Notifier()
    run_a = asyncio.create_task(reminder_dispatch(context(store, notifier_client=notifier), REMINDER))
    await notifier.wait_calls(1)
    # For run B, A's claim is older than REMINDER_STALE_AFTER: A has been stalled that long.
    env_b = WorkerEnv(reminder_stale_after=1e-6)
    run_b = asyncio.create_task(reminder_dispatch(context(store, env=env_b, notifier_client=notifier), REMINDER))
    await notifier.wait_calls(2)
    return notifier, run_a, run_b


async def test_a_stale_reminder_run_that_fails_to_send_cannot_release_the_newer_claim(store):
    notifier, run_a, run_b = await _two_runs_sending(store)
    notifier.settle(0, RetryableJobError("webhook answered 503"))
    with pytest.raises(RetryableJobError):
        await run_a
    held = await store.get_schedule("s1")
    assert (held.status, held.attempts) == ("SENDING", 2), "run A released run B's claim"
    assert await store.claim_schedule("s1", stale_after=60) is None, "a third run could send alongside B"
    notifier.settle(1)
    assert (await run_b).status == "processed"
    assert (await store.get_schedule("s1")).status == "SENT"


async def test_a_stale_reminder_run_that_fails_for_good_cannot_fail_the_newer_claim(store):
    notifier, run_a, run_b = await _two_runs_sending(store)
    notifier.settle(0, PermanentJobError("webhook answered 400"))
    with pytest.raises(PermanentJobError):
        await run_a
    assert (await store.get_schedule("s1")).status == "SENDING", "run A failed run B's claim"
    # B's send fails for now: its claim is released, so B's retry can send it.
    notifier.settle(1, RetryableJobError("webhook answered 503"))
    with pytest.raises(RetryableJobError):
        await run_b
    released = await store.get_schedule("s1")
    assert (released.status, released.last_error) == ("PENDING", "webhook answered 503")


async def test_a_schedule_is_released_or_failed_only_under_the_claim_that_holds_it(store):
    await store.upsert_schedule("s1", user_id="u1", channel="PUSH")
    old = await store.claim_schedule("s1", stale_after=60)
    past = old.claimed_at - dt.timedelta(minutes=5)  # the old claim, as a newer claimer finds it
    await store.upsert_schedule("s1", user_id="u1", channel="PUSH", status="SENDING", attempts=1, claimed_at=past)
    new = await store.claim_schedule("s1", stale_after=60)
    assert (old.attempts, new.attempts) == (1, 2)
    assert await store.release_schedule("s1", "503", claim=old) is False
    assert await store.mark_schedule_failed("s1", "400", claim=old) is False
    assert (await store.get_schedule("s1")).status == "SENDING"
    assert await store.release_schedule("s1", "503", claim=new) is True
    assert (await store.get_schedule("s1")).status == "PENDING"
