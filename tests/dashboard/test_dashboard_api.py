"""The dashboard's JSON API against real Redis: overview, jobs by state with paging, a job with its
error and traceback, workers, every action reflected at once, and errors as JSON with a status."""

import json
import re

import httpx

import jobqueue
from jobqueue import product_embedding_queue as embeddings
from jobqueue.dashboard import create_app
from jobqueue.settings import get_settings
from tests.support.waiting import free_port, wait_for
from tests.support.workers import RunningWorker, behaviour_key, counts, release_key, run_burst, settings_for

TOKEN = "t0ken"
AUTH = {"Authorization": f"Bearer {TOKEN}"}  # bearer requests need no CSRF token


def api(app=None, base="http://dash.test") -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app or create_app(token=TOKEN))
    return httpx.AsyncClient(transport=transport, base_url=base, headers=AUTH)


async def test_overview_lists_five_queues_with_exact_counts_and_the_last_hour(redis_client):
    await redis_client.set(behaviour_key("bad"), json.dumps({"permanent": True}))
    await jobqueue.enqueue_product_embeddings(["a", "b", "bad"])
    await run_burst(settings_for())
    await jobqueue.enqueue_product_embedding("next")
    async with api() as c:
        body = (await c.get("/api/queues")).json()
        detail = (await c.get("/api/queues/product-embedding?minutes=30")).json()
    names = [q["name"] for q in body["queues"]]
    assert names == list(jobqueue.QUEUE_NAMES.values())
    pe = body["queues"][0]
    assert pe["counts"] == counts(waiting=1, completed=2, failed=1)
    assert (pe["paused"], pe["workers"]) == (False, 0)
    assert pe["duration_p50"] is not None and pe["duration_p95"] >= pe["duration_p50"]
    assert body["redis_used_memory"] > 0
    history = detail["history"]
    assert len(history["minutes"]) == len(history["completed"]) == len(history["failed"]) == 30
    assert sum(history["completed"]) == detail["completed"] == 2
    assert sum(history["failed"]) == detail["failed"] == 1
    assert detail["failure_rate"] == round(1 / 3, 4)


async def test_jobs_by_state_page_through_in_run_order():
    await jobqueue.enqueue_product_embeddings([f"p{i:02d}" for i in range(25)])
    async with api() as c:
        first = (await c.get("/api/queues/product-embedding/jobs?state=waiting&size=10")).json()
        last = (await c.get("/api/queues/product-embedding/jobs?state=waiting&size=10&page=3")).json()
        bad = await c.get("/api/queues/product-embedding/jobs?state=lost")
        bad_page = await c.get("/api/queues/product-embedding/jobs?page=0")
    assert first["total"] == 25 and [j["job_id"] for j in first["jobs"]][:2] == [
        "product-embedding:p00",
        "product-embedding:p01",
    ]
    assert [j["payload"]["product_id"] for j in last["jobs"]] == [f"p{i}" for i in range(20, 25)]
    assert bad.status_code == 400 and "state must be one of" in bad.json()["error"]
    assert bad_page.status_code == 400 and "page" in bad_page.json()["error"]


async def test_a_failed_job_shows_its_error_traceback_and_timeline(redis_client):
    await redis_client.set(behaviour_key("bad"), json.dumps({"permanent": True}))
    await jobqueue.enqueue_product_embedding("bad", priority=7)
    await run_burst(settings_for())
    async with api() as c:
        job = (await c.get("/api/jobs/product-embedding:bad")).json()
        missing = await c.get("/api/jobs/product-embedding:none")
        no_queue = await c.get("/api/jobs/emails:1")
    assert job["state"] == "failed" and job["priority"] == 7 and job["attempts_made"] == 1
    assert job["error"] == "PermanentJobError: product bad cannot be embedded"
    assert "Traceback" in job["traceback"] and "record_handler" in job["traceback"]
    assert job["enqueued_at"] <= job["started_at"] <= job["finished_at"]
    assert missing.status_code == 404
    assert no_queue.status_code == 400 and "cannot tell the queue" in no_queue.json()["error"]


async def test_each_action_is_reflected_at_once(redis_client):
    await redis_client.set(behaviour_key("bad"), json.dumps({"permanent": True}))
    await redis_client.set(behaviour_key("bad2"), json.dumps({"permanent": True}))
    await jobqueue.enqueue_product_embeddings(["bad", "bad2", "fine"])
    await run_burst(settings_for())
    pe = "/api/queues/product-embedding"
    async with api() as c:
        retried = await c.post("/api/jobs/product-embedding:bad/retry")
        assert retried.json() == {"job_id": "product-embedding:bad", "state": "waiting"}
        assert (await c.post("/api/jobs/product-embedding:fine/retry")).status_code == 409
        assert (await c.post(f"{pe}/retry-failed")).json() == {"retried": 1}
        assert await embeddings.get_job_counts() == counts(waiting=2, completed=1)

        assert (await c.post(f"{pe}/pause")).json() == {"paused": True}
        assert (await c.get("/api/queues")).json()["queues"][0]["counts"]["paused"] == 2
        assert (await c.post(f"{pe}/resume")).json() == {"paused": False}

        await jobqueue.enqueue_product_embedding("later", delay=3600)
        assert (await c.post("/api/jobs/product-embedding:later/promote")).json()["state"] == "waiting"
        assert (await c.post("/api/jobs/product-embedding:later/promote")).status_code == 409
        assert (await c.post("/api/jobs/product-embedding:later/remove")).json() == {"removed": True}
        assert (await c.post("/api/jobs/product-embedding:later/remove")).status_code == 404

        assert (await c.post(f"{pe}/clean", json={"status": "completed", "grace": 0})).json()["removed"] == 1
        assert (await c.post(f"{pe}/clean", json={"status": "everything"})).status_code == 400
        assert (await c.post(f"{pe}/clean", content=b"[1]")).status_code == 400
        await jobqueue.enqueue_product_embedding("much-later", delay=3600)
        assert (await c.post(f"{pe}/drain", json={"delayed": True})).json() == {"removed": 3}
        assert (await c.post(f"{pe}/explode")).status_code == 404
        assert (await c.post("/api/queues/emails/pause")).status_code == 400
    assert await embeddings.get_job_counts() == counts()


async def test_workers_of_a_queue_with_their_running_jobs(redis_client):
    await redis_client.set(behaviour_key("slow"), json.dumps({"block": True}))
    await jobqueue.enqueue_product_embedding("slow")
    async with RunningWorker(settings_for(concurrency=2)), api() as c:

        async def running():
            workers = (await c.get("/api/queues/product-embedding/workers")).json()["workers"]
            return workers if workers and workers[0]["running"] == 1 else None

        (worker,) = await wait_for(running, what="the worker to report its running job")
        assert worker["concurrency"] == 2 and worker["last_heartbeat"] >= worker["started_at"]
        await redis_client.set(release_key("slow"), 1)


async def test_redis_down_is_a_503_naming_the_url_without_password(monkeypatch):
    port = free_port()
    monkeypatch.setenv("REDIS_URL", f"redis://:hunter2@127.0.0.1:{port}/0")
    get_settings.cache_clear()
    async with api() as c:
        response = await c.get("/api/queues")
    assert response.status_code == 503
    assert f"redis://***@127.0.0.1:{port}/0" in response.json()["error"]
    assert "hunter2" not in response.text


async def test_mounted_under_a_prefix_in_the_fastapi_example():
    from examples.fastapi_app import app

    # No credentials in the example's environment: loopback mode, so a loopback Host.
    async with app.router.lifespan_context(app), api(app, base="http://127.0.0.1:8000") as c:
        page = await c.get("/admin/queues/")
        assert page.status_code == 200
        assert re.search(r'name="jq-base" content="/admin/queues"', page.text)
        assert 'src="/admin/queues/static/dashboard.js"' in page.text
        assert (await c.get("/admin/queues/static/dashboard.js")).status_code == 200
        assert len((await c.get("/admin/queues/api/queues")).json()["queues"]) == 5
        assert "jobqueue_queue_jobs" in (await c.get("/admin/queues/metrics")).text


async def test_schedules_list_upserted_schedules_with_the_arq_cron_jobs_and_remove_one():
    await jobqueue.upsert_schedule(
        "nightly", "product-embedding", cron="0 2 * * *", tz="Europe/London", payload={"product_id": "p1"}, limit=5
    )
    await jobqueue.upsert_schedule(
        "often/p2", "product-enrichment", every=30, payload={"product_id": "p2"}, end="2099-01-01T00:00:00Z"
    )
    stored = {s.id: s for s in await jobqueue.get_schedules()}
    async with api() as c:
        rows = {row["id"]: row for row in (await c.get("/api/schedules")).json()["schedules"]}
        only = (await c.get("/api/schedules?queue=curated-collections")).json()["schedules"]
        bad_queue = await c.get("/api/schedules?queue=nope")

        nightly = rows["nightly"]
        assert (nightly["kind"], nightly["queue"], nightly["pattern"], nightly["tz"]) == (
            "schedule",
            "product-embedding",
            "cron 0 2 * * *",
            "Europe/London",
        )
        assert (nightly["fired"], nightly["limit"], nightly["end"]) == (0, 5, None)
        assert nightly["next_run"] == stored["nightly"].next_run.isoformat().replace("+00:00", "Z")
        often = rows["often/p2"]
        assert (often["pattern"], often["limit"], often["end"]) == ("every 30s", None, "2099-01-01T00:00:00Z")
        daily = rows["daily_curated_collections"]
        assert (daily["kind"], daily["queue"], daily["pattern"], daily["settings"]) == (
            "arq-cron",
            "curated-collections",
            "cron 0 3 * * *",
            "workers.CollectionsSettings",
        )
        assert [row["id"] for row in only] == ["daily_curated_collections"]
        assert bad_queue.status_code == 400 and "unknown queue 'nope'" in bad_queue.json()["error"]

        assert (await c.post("/api/schedules/often/p2/remove")).json() == {"removed": True}
        assert [s.id for s in await jobqueue.get_schedules()] == ["nightly"]
        missing = await c.post("/api/schedules/often/p2/remove")
        assert missing.status_code == 404 and "no schedule with id 'often/p2'" in missing.json()["error"]
        assert (await c.post("/api/schedules/nightly/explode")).status_code == 404
        left = [row["id"] for row in (await c.get("/api/schedules")).json()["schedules"]]
    assert left == ["nightly", "daily_curated_collections"]


async def test_cancel_ends_a_waiting_job_failed_and_answers_404_409_and_400():
    await jobqueue.enqueue_product_embedding("queued")
    await jobqueue.enqueue_product_embedding("later", delay=3600)
    async with api() as c:
        waiting = await c.post("/api/jobs/product-embedding:queued/cancel")
        assert waiting.json() == {"job_id": "product-embedding:queued", "was": "waiting", "state": "failed"}
        delayed = await c.post("/api/jobs/product-embedding:later/cancel", json={"reason": "not needed"})
        assert delayed.json()["was"] == "delayed"
        again = await c.post("/api/jobs/product-embedding:queued/cancel")
        assert again.status_code == 409 and "cannot be cancelled" in again.json()["error"]
        unknown = await c.post("/api/jobs/product-embedding:ghost/cancel")
        assert unknown.status_code == 404 and "not found" in unknown.json()["error"]
        await jobqueue.enqueue_product_embedding("kept")
        bad_reason = await c.post("/api/jobs/product-embedding:kept/cancel", json={"reason": 7})
        assert bad_reason.status_code == 400 and "reason must be a str" in bad_reason.json()["error"]
    queued = await embeddings.get_job("product-embedding:queued")
    assert (queued.state, queued.error_type) == ("failed", "JobCancelled")
    assert queued.error == "JobCancelled: cancelled from the dashboard"
    assert (await embeddings.get_job("product-embedding:later")).error == "JobCancelled: not needed"
    assert await embeddings.get_job_counts() == counts(waiting=1, failed=2)


async def test_cancel_stops_a_running_job(redis_client):
    await redis_client.set(behaviour_key("slow"), json.dumps({"block": True}))
    handle = await jobqueue.enqueue_product_embedding("slow")
    async with RunningWorker(settings_for()), api() as c:
        await wait_for(lambda: _state(handle, "active"), what="the job to start")
        answer = (await c.post("/api/jobs/product-embedding:slow/cancel")).json()
        assert (answer["was"], answer["state"]) == ("active", "active")  # its worker stops it
        await wait_for(lambda: _state(handle, "failed"), what="the worker to stop the cancelled run")
    job = await embeddings.get_job("product-embedding:slow")
    assert (job.error_type, job.attempts_made) == ("JobCancelled", 1)


async def _state(handle, state: str) -> bool:
    return await handle.status() == state
