"""Daily curated collections: matching products, grouped by embedding similarity, stored once."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from typing import Any

import numpy as np
from pydantic import BaseModel, Field

from jobqueue import (
    CuratedCollectionsJobPayload,
    CuratedCollectionsJobResult,
    LLMUsage,
    schedule_daily_curated_collections,
)
from workers.providers.llm import answer_counted
from workers.providers.store import NewCollection, ProductRecord
from workers.resources import resources
from workers.steps import Steps

# How many candidate products to read per product placed: room to pick similar ones.
CANDIDATES_PER_SLOT = 3
MAX_CANDIDATES = 2000
# Reported with update_progress as each starts (workers.steps).
STEPS = ("reading", "grouping", "naming", "storing")


def group_products(products: list[ProductRecord], size: int, count: int) -> list[list[ProductRecord]]:
    """Up to ``count`` groups of up to ``size`` products.

    Products with vectors are grouped greedily around seeds (in id order) with their most similar
    neighbours by cosine similarity (ties by id); products without vectors are grouped by category.
    Deterministic for equal input. CPU-bound (numpy): call it through ``group_products_in_thread``
    from async code.
    """
    groups: list[list[ProductRecord]] = []
    with_vectors = [p for p in products if p.embedding]
    if with_vectors:
        groups = _group_by_similarity(with_vectors, size, count)
    by_category: dict[str, list[ProductRecord]] = defaultdict(list)
    for product in products:
        if not product.embedding:
            by_category[product.category or ""].append(product)
    for _, items in sorted(by_category.items()):
        for start in range(0, len(items), size):
            if len(groups) < count:
                groups.append(items[start : start + size])
    return groups


def _group_by_similarity(products: list[ProductRecord], size: int, count: int) -> list[list[ProductRecord]]:
    dims = {len(p.embedding) for p in products}
    if len(dims) > 1:
        raise ValueError(f"product vectors differ in length ({sorted(dims)}): re-embed the products")
    vectors = np.array([p.embedding for p in products], dtype=np.float64)
    norms = np.linalg.norm(vectors, axis=1)
    # Sort keys: rank of each id, so ties in similarity fall back to id order.
    id_rank = np.empty(len(products), dtype=np.int64)
    id_rank[sorted(range(len(products)), key=lambda i: products[i].id)] = np.arange(len(products))
    remaining = np.arange(len(products))  # indices still free, in input order
    groups: list[list[ProductRecord]] = []
    while remaining.size and len(groups) < count:
        seed, others = remaining[0], remaining[1:]
        denominator = norms[others] * norms[seed]
        with np.errstate(invalid="ignore", divide="ignore"):
            similarity = np.where(denominator > 0, (vectors[others] @ vectors[seed]) / denominator, 0.0)
        # lexsort sorts by its last key first: most similar, then lowest id.
        nearest = others[np.lexsort((id_rank[others], -similarity))[: size - 1]]
        groups.append([products[seed], *(products[i] for i in nearest)])
        remaining = others[~np.isin(others, nearest)]
    return groups


async def group_products_in_thread(products: list[ProductRecord], size: int, count: int) -> list[list[ProductRecord]]:
    """``group_products`` in a worker thread, so the event loop (heartbeats, other jobs) keeps running."""
    return await asyncio.to_thread(group_products, products, size, count)


class CollectionTitle(BaseModel):
    title: str = Field(min_length=1, max_length=80)
    description: str = Field(max_length=300)


class CollectionTitles(BaseModel):
    collections: list[CollectionTitle]


TITLES_PROMPT = (
    "You name curated gift collections. For each numbered group of products, in order, return a "
    "short catchy title and a one-sentence description."
)


def fallback_title(surface: str, group: list[ProductRecord], index: int) -> NewCollection:
    categories = sorted({p.category for p in group if p.category})
    title = f"{categories[0].title()} picks" if len(categories) == 1 else f"{surface.title()} picks #{index + 1}"
    return NewCollection(title, None, [p.id for p in group])


async def _titled(
    ctx: dict[str, Any], surface: str, groups: list[list[ProductRecord]]
) -> tuple[list[NewCollection], LLMUsage | None]:
    res = resources(ctx)
    if res.llm_provider is None:  # titles from the LLM only when one is configured
        return [fallback_title(surface, g, i) for i, g in enumerate(groups)], None
    listing = "\n".join(
        f"{i + 1}. " + "; ".join(f"{p.name} ({p.category or 'gift'})" for p in group) for i, group in enumerate(groups)
    )
    answered = await answer_counted(
        res.llm, TITLES_PROMPT, f"Surface: {surface}\n{listing}", CollectionTitles, schema_name="collection_titles"
    )
    titles: CollectionTitles = answered.value
    # Keep what the model gave for the groups it named (extra titles dropped); fall back for the rest.
    pairs = zip(titles.collections, groups, strict=False)
    named = [NewCollection(t.title, t.description, [p.id for p in g]) for t, g in pairs]
    return named + [fallback_title(surface, g, i) for i, g in enumerate(groups) if i >= len(named)], answered.usage


async def curated_collections(
    ctx: dict[str, Any], payload: CuratedCollectionsJobPayload
) -> CuratedCollectionsJobResult:
    """Build and store the collections of one surface and date, once."""
    store = resources(ctx).store
    done = {"surface": payload.surface, "date": payload.date}
    if await store.collections_exist(payload.surface, payload.date):
        existing = await store.get_collections(payload.surface, payload.date)
        ids = [c.id for c in existing]
        return CuratedCollectionsJobResult(status="skipped", collection_ids=ids, reason="collections exist", **done)
    steps = Steps(ctx, STEPS)
    await steps.start("reading")
    f = payload.filters
    limit = min(payload.collections_count * payload.products_per_collection * CANDIDATES_PER_SLOT, MAX_CANDIDATES)
    products = await store.find_products(
        is_featured=f.is_featured if f else None,
        min_price=f.min_price if f else None,
        max_price=f.max_price if f else None,
        limit=limit,
    )
    await steps.start("grouping")
    groups = await group_products_in_thread(products, payload.products_per_collection, payload.collections_count)
    if not groups:
        await steps.done()
        return CuratedCollectionsJobResult(status="skipped", reason="no products match the filters", **done)
    await steps.start("naming")
    collections, usage = await _titled(ctx, payload.surface, groups)
    await steps.start("storing")
    ids = await store.save_collections(payload.surface, payload.date, collections)
    await steps.done()
    return CuratedCollectionsJobResult(status="processed", collection_ids=ids, usage=usage, **done)


async def daily_curated_collections(ctx: dict[str, Any]) -> list[str]:
    """The cron job: enqueue today's collections for every surface (deduplicated by job id)."""
    return [h.job_id for h in await schedule_daily_curated_collections()]
