"""The README's quickstart: one job of each kind against ``jobqueue dev``, and what each one did.

    make run                              # shell 1: jobqueue dev (Redis, workers, fakes)
    .venv/bin/jobqueue seed-demo          # shell 2: the demo catalogue
    .venv/bin/python examples/quickstart.py

Like an app, it uses the library's defaults: ``REDIS_URL`` (``redis://localhost:6379``, where
``jobqueue dev`` starts its Valkey) and ``DATABASE_URL`` (``./jobqueue.db``), so run it from the
directory ``jobqueue dev`` runs in.
"""

from __future__ import annotations

import asyncio
import datetime as dt

import jobqueue
from workers.providers.store import store_from_settings

PRODUCT = "demo-p01"
SCHEDULE = "demo-reminder-1"
RESULT_TIMEOUT_S = 60


def outcome(result) -> str:
    """``processed``, or ``skipped (why)`` when the worker found nothing to do."""
    return f"{result.status} ({result.reason})" if result.reason else result.status


async def main() -> None:
    store = store_from_settings()
    try:
        embedding = await jobqueue.enqueue_product_embedding(PRODUCT, triggered_by="quickstart")
        result = await embedding.result(timeout=RESULT_TIMEOUT_S)
        product = await store.get_product(PRODUCT)
        print(f"{embedding.job_id}: {outcome(result)}, {len(product.embedding or [])}-dimension vector stored")

        enrichment = await jobqueue.enqueue_product_enrichment(PRODUCT, triggered_by="quickstart")
        result = await enrichment.result(timeout=RESULT_TIMEOUT_S)
        product = await store.get_product(PRODUCT)
        summary = (product.enrichment or {}).get("summary")
        print(f"{enrichment.job_id}: {outcome(result)}, version {product.enrichment_version}: {summary!r}")

        today = dt.datetime.now(dt.UTC).date()
        collections = await jobqueue.enqueue_curated_collections(
            "home", today, collections_count=3, products_per_collection=4, triggered_by="quickstart"
        )
        result = await collections.result(timeout=RESULT_TIMEOUT_S)
        titles = [c.title for c in await store.get_collections("home", today)]
        print(f"{collections.job_id}: {outcome(result)}, {len(titles)} collections: {', '.join(titles)}")

        reminder = await jobqueue.enqueue_reminder_dispatch(
            SCHEDULE,
            "demo-user-1",
            "PUSH",
            {"title": "Birthday reminder", "body": "Sam's birthday is tomorrow!"},
            dt.datetime.now(dt.UTC),
            triggered_by="quickstart",
        )
        result = await reminder.result(timeout=RESULT_TIMEOUT_S)
        schedule = await store.get_schedule(SCHEDULE)
        print(f"{reminder.job_id}: {outcome(result)}, schedule {schedule.status if schedule else 'missing'}")
    finally:
        await store.aclose()
        await jobqueue.close_queues()


if __name__ == "__main__":
    asyncio.run(main())
