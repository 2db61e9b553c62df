"""seed-demo: a realistic catalogue written through SqlStore's upserts, idempotently."""

import subprocess
import sys
from pathlib import Path

from workers.dev.demo import DEMO_PRODUCTS, DEMO_SCHEDULES, DEMO_TASTE_PROFILES, seed_demo


async def test_seeding_writes_the_catalogue_once_and_keeps_what_jobs_stored(store):
    first = await seed_demo(store)
    assert first.written == {"products": 12, "taste profiles": 3, "reminder schedules": 3}
    products = await store.find_products(limit=100)
    assert [p.id for p in products] == [p["id"] for p in DEMO_PRODUCTS]
    assert all(p.price > 0 and p.description and p.category for p in products)
    assert len({p.category for p in products}) >= 5
    featured = await store.find_products(is_featured=True, limit=100)
    assert 0 < len(featured) < len(products)
    for profile in DEMO_TASTE_PROFILES:
        assert (await store.get_taste_profile(profile["id"])).answers == profile["answers"]
    for schedule in DEMO_SCHEDULES:
        assert (await store.get_schedule(schedule["id"])).status == "PENDING"

    source = await store.get_product("demo-p01")
    await store.save_product_embedding("demo-p01", [0.5, 0.5], "hash", "embed-test", source=source)
    await store.mark_schedule_sent("demo-reminder-1")
    again = await seed_demo(store)
    assert sum(again.written.values()) == 0 and sum(again.kept.values()) == 18
    assert str(again) == "wrote 0 products, 0 taste profiles, 0 reminder schedules (18 rows already there were kept)"
    assert (await store.get_product("demo-p01")).embedding == [0.5, 0.5]
    assert len(await store.find_products(limit=100)) == 12

    reset = await seed_demo(store, reset=True)
    assert sum(reset.written.values()) == 18
    assert (await store.get_product("demo-p01")).embedding is None
    assert (await store.get_schedule("demo-reminder-1")).status == "PENDING"


def test_seed_demo_command_writes_into_database_url(tmp_path):
    jobqueue_cli = Path(sys.executable).parent / "jobqueue"
    env = {"PATH": str(Path(sys.executable).parent), "DATABASE_URL": f"sqlite:///{tmp_path / 'demo.db'}"}
    first = subprocess.run([jobqueue_cli, "seed-demo"], env=env, capture_output=True, text=True, timeout=60)
    assert first.returncode == 0, first.stderr
    assert first.stdout.strip().endswith("wrote 12 products, 3 taste profiles, 3 reminder schedules")
    again = subprocess.run([jobqueue_cli, "seed-demo"], env=env, capture_output=True, text=True, timeout=60)
    assert "(18 rows already there were kept)" in again.stdout
