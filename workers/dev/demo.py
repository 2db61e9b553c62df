"""A small, realistic catalogue for trying the workers: ``jobqueue seed-demo`` writes it.

Twelve gift products in six categories (prices in pence, four featured), three taste profiles and
three reminder schedules (one per channel), through ``SqlStore``'s upsert methods. Seeding twice
changes nothing: rows that exist are kept (with whatever the jobs stored on them) unless
``reset=True`` writes them afresh.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from workers.providers.store import SqlStore

DEMO_PRODUCTS: Final[list[dict[str, Any]]] = [
    {
        "id": "demo-p01",
        "name": "Cast-iron Dutch oven, 24 cm",
        "category": "kitchen",
        "brand": "Hearth & Co",
        "price": 8900,
        "is_featured": True,
        "tags": ["cookware", "enamel"],
        "description": "Enamelled cast iron that goes from hob to oven to table. Holds four litres.",
    },
    {
        "id": "demo-p02",
        "name": "Single-origin coffee subscription, 3 months",
        "category": "kitchen",
        "brand": "Roastworks",
        "price": 4500,
        "is_featured": False,
        "tags": ["coffee", "subscription"],
        "description": "A fresh 250 g bag every month from a different farm, roasted the week it ships.",
    },
    {
        "id": "demo-p03",
        "name": "Hand-thrown stoneware mug set",
        "category": "home",
        "brand": "Kiln Lane",
        "price": 3200,
        "is_featured": True,
        "tags": ["ceramics", "handmade"],
        "description": "Four speckled mugs, each slightly different. Dishwasher safe.",
    },
    {
        "id": "demo-p04",
        "name": "Merino throw blanket",
        "category": "home",
        "brand": "Fellside",
        "price": 7500,
        "is_featured": False,
        "tags": ["wool", "cosy"],
        "description": "A soft 130 x 180 cm throw woven in the Lake District from merino wool.",
    },
    {
        "id": "demo-p05",
        "name": "The Illustrated Garden Birds",
        "category": "books",
        "brand": "Wren Press",
        "price": 2000,
        "is_featured": False,
        "tags": ["nature", "hardback"],
        "description": "Ninety British birds in watercolour, with notes on song, nest and season.",
    },
    {
        "id": "demo-p06",
        "name": "A Year of Slow Cooking",
        "category": "books",
        "brand": "Larder Books",
        "price": 2500,
        "is_featured": True,
        "tags": ["cookbook", "seasonal"],
        "description": "Fifty-two recipes, one for every week, that mostly look after themselves.",
    },
    {
        "id": "demo-p07",
        "name": "Herb garden window kit",
        "category": "garden",
        "brand": "Sill & Soil",
        "price": 1800,
        "is_featured": False,
        "tags": ["herbs", "indoor"],
        "description": "Basil, parsley and chives with pots, compost and a drip tray for a sunny sill.",
    },
    {
        "id": "demo-p08",
        "name": "Ash-handled pruning shears",
        "category": "garden",
        "brand": "Fellside",
        "price": 3800,
        "is_featured": False,
        "tags": ["tools", "gardening"],
        "description": "Bypass secateurs with a carbon-steel blade and a turned ash handle.",
    },
    {
        "id": "demo-p09",
        "name": "Leather-bound notebook",
        "category": "stationery",
        "brand": "Quire",
        "price": 2200,
        "is_featured": False,
        "tags": ["journal", "leather"],
        "description": "Refillable A5 notebook with 192 pages of cream dot-grid paper.",
    },
    {
        "id": "demo-p10",
        "name": "Fountain pen starter set",
        "category": "stationery",
        "brand": "Quire",
        "price": 5400,
        "is_featured": True,
        "tags": ["pen", "ink"],
        "description": "A steel-nibbed pen with a converter and three bottles of ink.",
    },
    {
        "id": "demo-p11",
        "name": "Lavender bath salts",
        "category": "wellbeing",
        "brand": "Still Water",
        "price": 1400,
        "is_featured": False,
        "tags": ["bath", "lavender"],
        "description": "Dead Sea salts with Norfolk lavender oil in a 500 g glass jar.",
    },
    {
        "id": "demo-p12",
        "name": "Wooden marble run",
        "category": "toys",
        "brand": "Tumble",
        "price": 4200,
        "is_featured": False,
        "tags": ["wooden", "ages 4+"],
        "description": "Sixty beech pieces that build towers, tracks and spirals. Ten marbles included.",
    },
]

DEMO_TASTE_PROFILES: Final[list[dict[str, Any]]] = [
    {
        "id": "demo-profile-1",
        "user_id": "demo-user-1",
        "recipient_id": None,
        "answers": {"likes": ["cooking", "coffee"], "style": "rustic", "budget_pence": 6000},
    },
    {
        "id": "demo-profile-2",
        "user_id": "demo-user-1",
        "recipient_id": "demo-recipient-mum",
        "answers": {"likes": ["gardening", "birds"], "style": "classic", "budget_pence": 4000},
    },
    {
        "id": "demo-profile-3",
        "user_id": "demo-user-2",
        "recipient_id": None,
        "answers": {"likes": ["writing", "reading"], "style": "minimal", "budget_pence": 3000},
    },
]

DEMO_SCHEDULES: Final[list[dict[str, Any]]] = [
    {"id": "demo-reminder-1", "user_id": "demo-user-1", "channel": "PUSH"},
    {"id": "demo-reminder-2", "user_id": "demo-user-1", "channel": "EMAIL"},
    {"id": "demo-reminder-3", "user_id": "demo-user-2", "channel": "SMS"},
]


@dataclass(frozen=True)
class SeedReport:
    """How many rows of each kind were written, and how many were already there."""

    written: dict[str, int]
    kept: dict[str, int]

    def __str__(self) -> str:
        parts = [f"{self.written[kind]} {kind}" for kind in self.written]
        kept = sum(self.kept.values())
        return "wrote " + ", ".join(parts) + (f" ({kept} rows already there were kept)" if kept else "")


async def seed_demo(store: SqlStore, *, reset: bool = False) -> SeedReport:
    """Write the demo catalogue into ``store``; rows that exist are kept unless ``reset``."""
    written = {"products": 0, "taste profiles": 0, "reminder schedules": 0}
    kept = dict.fromkeys(written, 0)
    for product in DEMO_PRODUCTS:
        if reset or await store.get_product(product["id"]) is None:
            await store.upsert_product(**product)
            written["products"] += 1
        else:
            kept["products"] += 1
    for profile in DEMO_TASTE_PROFILES:
        if reset or await store.get_taste_profile(profile["id"]) is None:
            await store.upsert_taste_profile(**profile)
            written["taste profiles"] += 1
        else:
            kept["taste profiles"] += 1
    for schedule in DEMO_SCHEDULES:
        if reset or await store.get_schedule(schedule["id"]) is None:
            await store.upsert_schedule(**schedule)
            written["reminder schedules"] += 1
        else:
            kept["reminder schedules"] += 1
    return SeedReport(written, kept)
