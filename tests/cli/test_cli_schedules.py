"""``jobqueue schedules`` run as a command against the real Redis."""

import asyncio
import json
import os
import sys

from jobqueue import get_schedules, upsert_schedule
from tests.support.waiting import ROOT, free_port


async def jobqueue_cli(*args: str, **env: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "from jobqueue.cli import main; main()",
        *args,
        env={**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "200", **env},
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    return proc.returncode, out.decode(), err.decode()


async def test_schedules_json_lists_schedules_and_the_arq_cron_jobs_beside_them(redis_client):
    await upsert_schedule(
        "nightly", "product-embedding", cron="0 2 * * *", tz="Europe/London", payload={"product_id": "p1"}, limit=5
    )
    await upsert_schedule("often", "product-enrichment", every=30, payload={"product_id": "p2"})
    code, out, err = await jobqueue_cli("schedules", "--json")
    assert code == 0, err
    rows = {row["id"]: row for row in json.loads(out)}
    nightly = rows["nightly"]
    assert (nightly["kind"], nightly["queue"], nightly["pattern"], nightly["tz"]) == (
        "schedule",
        "product-embedding",
        "cron 0 2 * * *",
        "Europe/London",
    )
    assert (nightly["fired"], nightly["limit"], nightly["payload"]) == (0, 5, {"product_id": "p1"})
    stored = {s.id: s for s in await get_schedules()}
    assert nightly["next_run"] == stored["nightly"].next_run.isoformat().replace("+00:00", "Z")
    assert rows["often"]["pattern"] == "every 30s"
    daily = rows["daily_curated_collections"]
    assert (daily["kind"], daily["queue"], daily["settings"]) == (
        "arq-cron",
        "curated-collections",
        "workers.CollectionsSettings",
    )
    assert daily["pattern"] == "cron 0 3 * * *" and daily["next_run"].endswith("T03:00:00Z")

    code, out, err = await jobqueue_cli("schedules", "--json", "--queue", "curated-collections")
    assert code == 0, err
    assert [row["id"] for row in json.loads(out)] == ["daily_curated_collections"]


async def test_schedules_table_shows_each_schedule(redis_client):
    await upsert_schedule("nightly", "product-embedding", cron="0 2 * * *", payload={"product_id": "p1"}, limit=5)
    code, out, err = await jobqueue_cli("schedules")
    assert code == 0, err
    lines = out.splitlines()
    (row,) = [line for line in lines if "nightly" in line]
    for cell in ("schedule", "product-embedding", "cron 0 2 * * *", "UTC", "0/5"):
        assert cell in row
    assert any("arq-cron" in line and "daily_curated_collections" in line for line in lines)


async def test_schedules_remove_removes_and_an_unknown_id_is_a_one_line_error(redis_client):
    await upsert_schedule("doomed", "product-embedding", every=60, payload={"product_id": "p1"})
    code, out, err = await jobqueue_cli("schedules", "remove", "doomed")
    assert (code, out.strip()) == (0, "removed schedule doomed"), err
    assert await get_schedules() == []
    code, out, err = await jobqueue_cli("schedules", "remove", "doomed")
    assert (code, err.strip()) == (1, "jobqueue: error: no schedule with id 'doomed'")


async def test_schedules_with_bad_queue_or_redis_down_are_one_line_errors():
    code, _, err = await jobqueue_cli("schedules", "--queue", "nope")
    assert code == 1 and err.startswith("jobqueue: error: unknown queue 'nope'") and len(err.strip().splitlines()) == 1
    port = free_port()
    code, _, err = await jobqueue_cli(
        "schedules", REDIS_URL=f"redis://:pw@127.0.0.1:{port}/0", JOBQUEUE_REDIS_TIMEOUT="1"
    )
    assert code == 1 and len(err.strip().splitlines()) == 1
    assert err.startswith(f"jobqueue: error: Redis is unavailable at redis://***@127.0.0.1:{port}/0")
