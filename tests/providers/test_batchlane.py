"""The batch lane end to end: real Redis, real workers, the fake server's Files and Batch APIs.

Batch-lane jobs park while their requests run in a Batch API submission and are written like
sync-lane jobs once it has answered; each way a batch ends is handled; the lane's state is in
Redis, so another worker finishes what a stopped one started.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

import jobqueue
from jobqueue import InvalidJobError, JobFailedError
from jobqueue.backend.connection import get_redis
from jobqueue.batches import LaneKeys, get_batches
from jobqueue.dashboard import create_app
from jobqueue.queue.events import parse_event
from jobqueue.spend import price_table, spend_summary
from tests.support.fixtures import DIMS
from tests.support.waiting import WorkerProcess, wait_for
from tests.support.workers import RunningWorker, run_burst
from workers.jobs.products import canonical_text
from workers.settings import embedding_settings, enrichment_settings, taste_profile_settings
from workers.testing.fake_openai import FakeOpenAI

EMBEDDINGS = "/v1/embeddings"
queue = jobqueue.product_embedding_queue
FAST_LANE = {
    "JOBQUEUE_BATCH_POLL_INTERVAL": "0.05",
    "JOBQUEUE_BATCH_GATHER_QUIET": "0.3",
    "JOBQUEUE_BATCH_GATHER_MAX": "5",
    "JOBQUEUE_BATCH_LOCK_TTL": "5",
    # The test models priced, so that a submission's cost is the table's, at the batch discount.
    "JOBQUEUE_LLM_PRICES": '{"embed-test": {"input": 0.02}, "gpt-test": {"input": 0.15, "output": 0.6}}',
}


@pytest.fixture
def fast_lane(core_env, monkeypatch, fake_openai) -> Iterator[FakeOpenAI]:
    for key, value in FAST_LANE.items():
        monkeypatch.setenv(key, value)
    price_table.cache_clear()
    fake_openai.batch_completion_s = 0.3
    yield fake_openai
    price_table.cache_clear()


async def _seed(store, n: int, prefix: str = "p") -> dict[str, str]:
    texts = {}
    for i in range(n):
        product = await store.upsert_product(
            f"{prefix}{i}", name=f"Product {prefix}{i}", price=1000 + i, description=f"Item {i} of {prefix}."
        )
        texts[product.id] = canonical_text(product)
    return texts


def _ids(handles) -> dict[str, jobqueue.JobHandle]:
    return {h.job_id.split(":", 1)[1]: h for h in handles}


async def _stored(store, product_id: str) -> tuple:
    product = await store.get_product(product_id)
    return product.embedding, product.text_hash, product.embedding_model


async def test_a_bad_lane_is_refused_before_anything_is_written(core_env):
    with pytest.raises(InvalidJobError, match="lane must be one of 'sync', 'batch', got 'bulk'"):
        await jobqueue.enqueue_product_embeddings(["p1", "p2"], lane="bulk")
    with pytest.raises(InvalidJobError, match="lane must be one of"):
        await jobqueue.enqueue_product_enrichment("p1", lane=None)
    assert await queue.get_job_counts() == dict.fromkeys(
        ("waiting", "active", "completed", "failed", "delayed", "paused"), 0
    )


async def test_payloads_carry_the_lane_only_when_it_is_batch(core_env):
    both = await jobqueue.enqueue_product_processing("p1", lane="batch")
    synced = await jobqueue.enqueue_product_embedding("p2", lane="sync")
    profile = await jobqueue.enqueue_taste_profile_embeddings([("t1", "u1")], lane="batch")
    assert (await queue.get_job(both.embedding_job.job_id)).payload == {"product_id": "p1", "lane": "batch"}
    enrichment = await jobqueue.product_enrichment_queue.get_job(both.enrichment_job.job_id)
    assert enrichment.payload == {"product_id": "p1", "lane": "batch"}
    assert (await queue.get_job(synced.job_id)).payload == {"product_id": "p2"}
    taste = await jobqueue.taste_profile_embedding_queue.get_job(profile[0].job_id)
    assert taste.payload["lane"] == "batch"
    # The same id on the other lane is the same job: deduplicated.
    again = await jobqueue.enqueue_product_embedding("p1")
    assert not again.created


async def test_batch_lane_products_go_in_one_submission_and_are_stored_as_the_sync_lane_stores_them(store, fast_lane):
    batch_texts = await _seed(store, 40, prefix="b")
    sync_texts = await _seed(store, 5, prefix="s")
    handles = _ids(await jobqueue.enqueue_product_embeddings(list(batch_texts), lane="batch"))
    await jobqueue.enqueue_product_embeddings(list(sync_texts))
    assert all(h.created for h in handles.values())
    assert (await queue.get_job(handles["b0"].job_id)).payload["lane"] == "batch"

    await run_burst(embedding_settings())

    batches = fast_lane.batches()
    assert len(batches) == 1 and batches[0]["requests"] == 40 and batches[0]["status"] == "completed"
    assert batches[0]["endpoint"] == EMBEDDINGS
    # The sync jobs' texts went through /v1/embeddings; none of the batch jobs' did.
    synced = [t for r in fast_lane.requests_to(EMBEDDINGS) for t in r.body["input"]]
    assert sorted(synced) == sorted(sync_texts.values())
    for product_id, text in batch_texts.items():
        result = await handles[product_id].result(timeout=5)
        assert result.status == "processed" and result.dims == DIMS
        vector, digest, model = await _stored(store, product_id)
        assert vector == pytest.approx(FakeOpenAI.vector_for(text, DIMS))
        assert (digest, model) == (result.text_hash, "embed-test")
        info = await queue.get_job(handles[product_id].job_id)
        assert info.attempts_made == 1  # parking spent no attempt
    events = [parse_event(i, f) for i, f in await get_redis().xrange(queue.keys.events)]
    parked = [e for e in events if e.name == "parked"]
    assert sorted(e.job_id for e in parked) == sorted(h.job_id for h in handles.values())
    assert all(e.data["attempt"] == 1 and "batch submission" in e.data["reason"] for e in parked)
    assert fast_lane.embedded_counts() == {t: 1 for t in [*batch_texts.values(), *sync_texts.values()]}
    view = await get_batches(queue.name)
    assert view.pending == 0 and not view.open
    (ended,) = view.ended
    assert (ended.ending, ended.requests, ended.completed, ended.failed) == ("completed", 40, 40, 0)
    assert ended.input_tokens > 0
    assert ended.cost_usd == pytest.approx(ended.input_tokens * 0.02 / 1e6 * 0.5)  # half the sync price
    # The submission's usage counts in the queue's spend figures, on the batch lane.
    spend = (await spend_summary(queue.name))["hour"]["by_model"]
    (batch_spend,) = [row for row in spend if row["lane"] == "batch"]
    assert (batch_spend["model"], batch_spend["requests"]) == ("embed-test", 40)
    assert batch_spend["input_tokens"] == ended.input_tokens
    assert batch_spend["cost_usd"] == pytest.approx(ended.cost_usd, abs=1e-6)
    # Nothing of the lane is left but the ended submission's record.
    left = sorted(k.decode() for k in await get_redis().keys(LaneKeys(queue.name).base + "*"))
    assert left == [LaneKeys(queue.name).ended, LaneKeys(queue.name).submission(ended.sid)]


async def test_the_same_products_get_identical_store_rows_on_either_lane(store, fast_lane):
    texts = await _seed(store, 10)
    await jobqueue.enqueue_product_embeddings(list(texts))
    await run_burst(embedding_settings())
    on_sync = {p: await _stored(store, p) for p in texts}
    for product_id in texts:  # a new text hash makes the products due for embedding again
        await store.upsert_product(product_id, name=f"Product {product_id}", price=1, description="Changed.")
        await store.upsert_product(
            product_id,
            name=f"Product {product_id}",
            price=1000 + int(product_id[1:]),
            description=f"Item {product_id[1:]} of p.",
        )
    await jobqueue.enqueue_product_embeddings(list(texts), lane="batch")
    await run_burst(embedding_settings())
    assert len(fast_lane.batches()) == 1
    assert {p: await _stored(store, p) for p in texts} == on_sync


async def test_items_that_fail_inside_a_batch_are_retried_alone_in_a_second_submission(store, fast_lane):
    texts = await _seed(store, 12)
    fast_lane.fail_in_batch(texts["p3"], status=500)
    fast_lane.fail_in_batch(texts["p7"], status=500)
    handles = _ids(await jobqueue.enqueue_product_embeddings(list(texts), lane="batch"))
    await run_burst(embedding_settings())

    first, second = fast_lane.batches()
    assert (first["requests"], first["request_counts"]["failed"]) == (12, 2)
    assert second["requests"] == 2 and second["request_counts"]["completed"] == 2
    for product_id, text in texts.items():
        assert (await handles[product_id].result(timeout=5)).status == "processed"
        info = await queue.get_job(handles[product_id].job_id)
        assert info.attempts_made == (2 if product_id in ("p3", "p7") else 1), product_id
        assert (await store.get_product(product_id)).embedding == pytest.approx(FakeOpenAI.vector_for(text, DIMS))


async def test_an_invalid_request_in_a_batch_fails_its_job_at_once(store, fast_lane):
    texts = await _seed(store, 4)
    fast_lane.fail_in_batch(texts["p1"], status=400)
    handles = _ids(await jobqueue.enqueue_product_embeddings(list(texts), lane="batch"))
    await run_burst(embedding_settings())
    with pytest.raises(JobFailedError, match="InvalidInputError: the Batch API answered this request with 400") as info:
        await handles["p1"].result(timeout=5)
    assert info.value.attempts == 1
    assert len(fast_lane.batches()) == 1
    assert (await store.get_product("p1")).embedding is None


async def test_an_expired_batch_resubmits_its_unanswered_requests(store, fast_lane):
    texts = await _seed(store, 10)
    fast_lane.expire_next_batch(finished=4)
    handles = _ids(await jobqueue.enqueue_product_embeddings(list(texts), lane="batch"))
    await run_burst(embedding_settings())

    first, second = fast_lane.batches()
    assert first["status"] == "expired" and first["request_counts"]["completed"] == 4
    assert second["status"] == "completed" and second["requests"] == 6
    for product_id, text in texts.items():
        assert (await handles[product_id].result(timeout=5)).status == "processed"
        assert (await queue.get_job(handles[product_id].job_id)).attempts_made == 1
        assert (await store.get_product(product_id)).embedding == pytest.approx(FakeOpenAI.vector_for(text, DIMS))
    assert not fast_lane.requests_to(EMBEDDINGS)  # nothing went on the sync lane
    ended = {s.ending: s for s in (await get_batches(queue.name)).ended}
    assert ended["expired"].resubmitted == 6 and ended["expired"].sent_sync == 0


async def test_past_the_deadline_an_expired_batchs_unanswered_requests_go_on_the_sync_lane(
    store, fast_lane, monkeypatch
):
    monkeypatch.setenv("JOBQUEUE_BATCH_SYNC_AFTER", "0")
    texts = await _seed(store, 6)
    fast_lane.expire_next_batch(finished=2)
    handles = _ids(await jobqueue.enqueue_product_embeddings(list(texts), lane="batch"))
    await run_burst(embedding_settings())

    (only,) = fast_lane.batches()
    assert only["status"] == "expired"
    synced = [t for r in fast_lane.requests_to(EMBEDDINGS) for t in r.body["input"]]
    assert len(synced) == 4 and set(synced) <= set(texts.values())
    for product_id, text in texts.items():
        assert (await handles[product_id].result(timeout=5)).status == "processed"
        assert (await store.get_product(product_id)).embedding == pytest.approx(FakeOpenAI.vector_for(text, DIMS))
    assert fast_lane.embedded_counts() == {t: 1 for t in texts.values()}
    (ended,) = (await get_batches(queue.name)).ended
    assert (ended.ending, ended.sent_sync, ended.resubmitted) == ("expired", 4, 0)


async def test_cancelling_one_job_of_a_running_batch_leaves_the_others_to_finish(store, fast_lane):
    fast_lane.batch_completion_s = 60  # the batch is still running when the job is cancelled
    texts = await _seed(store, 8)
    handles = _ids(await jobqueue.enqueue_product_embeddings(list(texts), lane="batch"))
    async with RunningWorker(embedding_settings()):

        async def submitted() -> bool:
            return bool((await get_batches(queue.name)).open) and len(fast_lane.batches()) == 1

        await wait_for(submitted, timeout=20, what="the batch to be submitted")
        assert await handles["p2"].status() == "delayed"  # parked
        assert await queue.cancel_job(handles["p2"].job_id, reason="not needed") is not None
        with pytest.raises(JobFailedError, match="JobCancelled"):
            await handles["p2"].result(timeout=5)
        fast_lane.batch_completion_s = 0  # the batch ends now

        async def others_done() -> bool:
            return (await queue.get_job_counts())["completed"] == 7

        await wait_for(others_done, timeout=20, what="the other seven jobs")
    assert (await store.get_product("p2")).embedding is None
    assert await handles["p2"].status() == "failed"
    # The cancelled job's answer was dropped, not kept.
    assert not await get_redis().exists(LaneKeys(queue.name).item(handles["p2"].job_id))


async def test_a_cancelled_batch_fails_its_unanswered_jobs(store, fast_lane):
    fast_lane.batch_completion_s = 60
    texts = await _seed(store, 5)
    handles = _ids(await jobqueue.enqueue_product_embeddings(list(texts), lane="batch"))
    async with RunningWorker(embedding_settings()):

        async def submitted() -> list:
            return fast_lane.batches()

        (batch,) = await wait_for(submitted, timeout=20, what="the batch to be submitted")
        client = __import__("openai").AsyncOpenAI(base_url=fast_lane.base_url, api_key="sk-test")
        await client.batches.cancel(batch["id"])
        await client.close()

        async def all_failed() -> bool:
            return (await queue.get_job_counts())["failed"] == 5

        await wait_for(all_failed, timeout=20, what="the jobs of the cancelled batch to fail")
    for handle in handles.values():
        with pytest.raises(JobFailedError, match=r"BatchLaneCancelledError: batch .* was cancelled"):
            await handle.result(timeout=5)
    (ended,) = (await get_batches(queue.name)).ended
    assert ended.ending == "cancelled"


async def test_a_worker_stopped_while_its_batch_runs_leaves_another_worker_to_finish_it(store, fast_lane, core_env):
    fast_lane.batch_completion_s = 3
    texts = await _seed(store, 30)
    handles = _ids(await jobqueue.enqueue_product_embeddings(list(texts), lane="batch"))
    env = {**core_env, **FAST_LANE}
    with WorkerProcess("workers.EmbeddingSettings", **env) as first:

        async def submitted() -> bool:
            return bool((await get_batches(queue.name)).open) and bool(fast_lane.batches())

        await first.wait_for(submitted, timeout=30, what="the first worker to submit the batch")
        first.kill()  # no clean-up: the lane's lock and the open submission stay in Redis
    assert (await queue.get_job_counts())["delayed"] == 30
    with WorkerProcess("workers.EmbeddingSettings", **env) as second:

        async def all_done() -> bool:
            return (await queue.get_job_counts())["completed"] == 30

        await second.wait_for(all_done, timeout=60, what="the second worker to finish the batch")
    assert len(fast_lane.batches()) == 1
    for product_id, text in texts.items():
        assert (await handles[product_id].result(timeout=5)).status == "processed"
        assert (await store.get_product(product_id)).embedding == pytest.approx(FakeOpenAI.vector_for(text, DIMS))


async def test_enrichment_and_taste_profiles_take_the_batch_lane_too(store, fast_lane):
    await _seed(store, 3)
    handles = _ids(await jobqueue.enqueue_product_enrichments(["p0", "p1", "p2"], lane="batch"))
    await run_burst(enrichment_settings())
    (chat,) = fast_lane.batches()
    assert chat["endpoint"] == "/v1/chat/completions" and chat["requests"] == 3
    assert not fast_lane.requests_to("/v1/chat/completions")
    for product_id, handle in handles.items():
        assert (await handle.result(timeout=5)).status == "processed"
        assert (await store.get_product(product_id)).enrichment["summary"]

    await store.upsert_taste_profile("t1", user_id="u1", answers={"likes": ["tea"]})
    profile = await jobqueue.enqueue_taste_profile_embedding("t1", "u1", lane="batch")
    await run_burst(taste_profile_settings())
    assert (await profile.result(timeout=5)).status == "processed"
    assert fast_lane.batches()[-1]["endpoint"] == EMBEDDINGS
    stored = await store.get_taste_profile("t1")
    assert stored.vector == pytest.approx(FakeOpenAI.vector_for("likes: tea", DIMS))
    assert json.loads(json.dumps(stored.answers)) == {"likes": ["tea"]}


async def test_a_batchs_progress_shows_in_the_cli_and_the_dashboard_api(store, fast_lane):
    fast_lane.batch_completion_s = 60
    texts = await _seed(store, 6)
    await jobqueue.enqueue_product_embeddings(list(texts), lane="batch")
    transport = httpx.ASGITransport(app=create_app(token="t0ken"))
    async with (
        RunningWorker(embedding_settings()),
        httpx.AsyncClient(
            transport=transport, base_url="http://dash.test", headers={"Authorization": "Bearer t0ken"}
        ) as c,
    ):

        async def in_progress() -> dict | None:
            body = (await c.get("/api/queues/product-embedding/batches")).json()
            running = body["open"] and body["open"][0]["status"] == "in_progress" and not body["pending"]
            return body if running else None

        body = await wait_for(in_progress, timeout=20, what="the dashboard to show the running batch")
        (running,) = body["open"]
        assert running["requests"] == 6 and running["batch_id"].startswith("batch-")
        assert running["endpoint"] == EMBEDDINGS and body["pending"] == 0 and body["ended"] == []
        fast_lane.batch_completion_s = 0

        async def ended() -> bool:
            return bool((await c.get("/api/queues/product-embedding/batches")).json()["ended"])

        await wait_for(ended, timeout=20, what="the batch to end")
    code, out, _ = await asyncio.to_thread(_jobqueue, "batches", "product-embedding", "--json")
    shown = json.loads(out)
    assert code == 0 and shown["ended"][0]["ending"] == "completed" and shown["ended"][0]["completed"] == 6
    code, out, _ = await asyncio.to_thread(_jobqueue, "batches", "product-embedding")
    assert code == 0 and running["sid"] in out and "completed" in out and "6/6" in out
    code, _, err = await asyncio.to_thread(_jobqueue, "batches", "emails")
    assert code == 1 and "unknown queue 'emails'" in err


def _jobqueue(*args: str) -> tuple[int, str, str]:
    """The ``jobqueue`` console script, as an operator runs it."""
    script = Path(sys.executable).parent / "jobqueue"
    proc = subprocess.run(
        [str(script), *args], env={**os.environ, "COLUMNS": "200"}, capture_output=True, text=True, timeout=60
    )
    return proc.returncode, proc.stdout, proc.stderr


async def test_a_refused_submission_fails_its_jobs_and_a_5xx_is_submitted_again(store, fast_lane):
    texts = await _seed(store, 3)
    fast_lane.fail_next(status=500, path="/v1/batches")  # the first create: tried again next pass
    handles = _ids(await jobqueue.enqueue_product_embeddings(list(texts), lane="batch"))
    await run_burst(embedding_settings())
    assert len(fast_lane.batches()) == 1
    for handle in handles.values():
        assert (await handle.result(timeout=5)).status == "processed"
    view = await get_batches(queue.name)
    assert not view.open and len(view.ended) == 1

    await store.upsert_product("q0", name="Another", price=1, description="New.")
    fast_lane.fail_next(status=401, path="/v1/files")  # a bad key: no retry can help
    refused = await jobqueue.enqueue_product_embedding("q0", lane="batch")
    await run_burst(embedding_settings())
    with pytest.raises(JobFailedError, match=r"401.*check LLM_API_KEY") as info:
        await refused.result(timeout=5)
    assert info.value.attempts == 1 and len(fast_lane.batches()) == 1


async def test_a_batch_whose_creation_reply_was_lost_is_found_by_its_metadata_and_adopted(
    store, fast_lane, monkeypatch
):
    monkeypatch.setenv("JOBQUEUE_BATCH_LOCK_TTL", "1")  # recover() looks for it after this long
    create = openai.resources.batches.AsyncBatches.create
    lost: list[str] = []

    async def created_but_reply_lost(self, **kwargs):
        batch = await create(self, **kwargs)
        if not lost:
            lost.append(batch.id)
            raise openai.APIConnectionError(request=httpx.Request("POST", fast_lane.base_url + "/batches"))
        return batch

    monkeypatch.setattr(openai.resources.batches.AsyncBatches, "create", created_but_reply_lost)
    texts = await _seed(store, 5)
    handles = _ids(await jobqueue.enqueue_product_embeddings(list(texts), lane="batch"))
    await run_burst(embedding_settings())
    (only,) = fast_lane.batches()
    assert lost == [only["id"]]  # adopted: no second batch for the same requests
    for product_id, text in texts.items():
        assert (await handles[product_id].result(timeout=5)).status == "processed"
        assert (await store.get_product(product_id)).embedding == pytest.approx(FakeOpenAI.vector_for(text, DIMS))
    (ended,) = (await get_batches(queue.name)).ended
    assert ended.batch_id == only["id"] and ended.ending == "completed"
