"""Daily curated collections: matching products, grouped by embedding similarity, stored once."""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any

from pydantic import BaseModel, Field

from jobqueue import CuratedCollectionsJobPayload, CuratedCollectionsJobResult, schedule_daily_curated_collections
from workers.resources import resources
from workers.store import NewCollection, ProductRecord

# How many candidate products to read per product placed: room to pick similar ones.
CANDIDATES_PER_SLOT = 3
MAX_CANDIDATES = 2000


def cosine(a: list[float], b: list[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    norm = math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b))
    return dot / norm if norm else 0.0


def group_products(products: list[ProductRecord], size: int, count: int) -> list[list[ProductRecord]]:
    """Up to ``count`` groups of up to ``size`` products.

    Products with vectors are grouped greedily around seeds (in id order) with their most similar
    neighbours; products without vectors are grouped by category. Deterministic for equal input.
    """
    groups: list[list[ProductRecord]] = []
    remaining = [p for p in products if p.embedding]
    while remaining and len(groups) < count:
        seed = remaining[0]
        nearest = sorted(remaining[1:], key=lambda p: (-cosine(seed.embedding, p.embedding), p.id))[: size - 1]
        groups.append([seed, *nearest])
        taken = {p.id for p in nearest}
        remaining = [p for p in remaining[1:] if p.id not in taken]
    by_category: dict[str, list[ProductRecord]] = defaultdict(list)
    for product in products:
        if not product.embedding:
            by_category[product.category or ""].append(product)
    for _, items in sorted(by_category.items()):
        for start in range(0, len(items), size):
            if len(groups) < count:
                groups.append(items[start : start + size])
    return groups


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


async def _titled(ctx: dict[str, Any], surface: str, groups: list[list[ProductRecord]]) -> list[NewCollection]:
    res = resources(ctx)
    if res.llm_provider is None:  # titles from the LLM only when one is configured
        return [fallback_title(surface, g, i) for i, g in enumerate(groups)]
    listing = "\n".join(
        f"{i + 1}. " + "; ".join(f"{p.name} ({p.category or 'gift'})" for p in group) for i, group in enumerate(groups)
    )
    titles = await res.llm.complete_json(
        TITLES_PROMPT, f"Surface: {surface}\n{listing}", CollectionTitles, schema_name="collection_titles"
    )
    # Keep what the model gave for the groups it named (extra titles dropped); fall back for the rest.
    pairs = zip(titles.collections, groups, strict=False)
    named = [NewCollection(t.title, t.description, [p.id for p in g]) for t, g in pairs]
    return named + [fallback_title(surface, g, i) for i, g in enumerate(groups) if i >= len(named)]


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
    f = payload.filters
    limit = min(payload.collections_count * payload.products_per_collection * CANDIDATES_PER_SLOT, MAX_CANDIDATES)
    products = await store.find_products(
        is_featured=f.is_featured if f else None,
        min_price=f.min_price if f else None,
        max_price=f.max_price if f else None,
        limit=limit,
    )
    groups = group_products(products, payload.products_per_collection, payload.collections_count)
    if not groups:
        return CuratedCollectionsJobResult(status="skipped", reason="no products match the filters", **done)
    collections = await _titled(ctx, payload.surface, groups)
    ids = await store.save_collections(payload.surface, payload.date, collections)
    return CuratedCollectionsJobResult(status="processed", collection_ids=ids, **done)


async def daily_curated_collections(ctx: dict[str, Any]) -> list[str]:
    """The cron job: enqueue today's collections for every surface (deduplicated by job id)."""
    return [h.job_id for h in await schedule_daily_curated_collections()]
