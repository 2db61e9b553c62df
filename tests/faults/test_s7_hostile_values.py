"""Scenario 7, hostile values: a job key overwritten with garbage, a pickle or JSON of the wrong
shape fails that job with a clear error, runs no code and leaves the worker serving; an oversized
payload and ids that could break keys or logs are refused before anything is written."""

from __future__ import annotations

import json

import pytest
import redis

import jobqueue
from jobqueue import InvalidJobError
from jobqueue import product_embedding_queue as embeddings
from jobqueue.backend.connection import get_redis
from jobqueue.constants import MAX_PAYLOAD_BYTES
from tests.faults import figures
from tests.faults.workers import EVENTS_KEY, parse_events, worker_env
from tests.support.redis_server import OWNED_PATTERNS
from tests.support.waiting import WorkerProcess
from tests.support.workers import counts

SCENARIO = 7
FUNCTION = embeddings.function


def hostile_values(marker: str) -> dict[str, bytes]:
    # A pickle that would create ``marker`` if anything ever unpickled it: builtins.open(marker, "w").
    pickled = b"cbuiltins\nopen\n(V" + marker.encode() + b"\nVw\ntR."
    job = {"t": None, "f": FUNCTION, "a": [{"product_id": "x"}, 2], "k": {}, "et": 1}
    return {
        "garbage": b"\x00\xff not json at all \x80",
        "pickle": pickled,
        "json-list": b"[1, 2, 3]",
        "json-null": b"null",
        "json-missing-keys": json.dumps({"f": FUNCTION}).encode(),
        "json-args-not-a-list": json.dumps({**job, "a": "xyz"}).encode(),
        "json-payload-not-an-object": json.dumps({**job, "a": [17, 2]}).encode(),
        "json-payload-unknown-field": json.dumps({**job, "a": [{"product_id": "x", "evil": 1}, 2]}).encode(),
    }


async def test_hostile_job_values_fail_clearly_run_no_code_and_the_worker_keeps_serving(tmp_path):
    marker = tmp_path / "unpickled"
    values = hostile_values(str(marker))
    redis_ = get_redis()
    ids = {}
    for name, value in values.items():
        handle = await jobqueue.enqueue_product_embedding(f"hostile-{name}")
        await redis_.set(embeddings.keys.arq_job(handle.job_id), value)
        ids[name] = handle.job_id
    env = worker_env(concurrency=2, attempts=2, backoff_base=0.05, backoff_jitter=0, worker_lease=2)
    with WorkerProcess("tests.faults.workers.StormSettings", **env) as worker:
        await worker.wait_for(lambda: _settled(len(values)), timeout=30, what="the hostile jobs to settle")
        good = await jobqueue.enqueue_product_embedding("after-the-hostile-ones")
        await worker.wait_for(lambda: _state(good.job_id, "completed"), timeout=20, what="a good job afterwards")
        alive = worker.proc.poll() is None
        log = worker.output()
    infos = {name: await embeddings.get_job(job_id) for name, job_id in ids.items()}
    failed = {name: info for name, info in infos.items() if info is not None and info.state == "failed"}
    ran = [e for e in parse_events(await redis_.lrange(EVENTS_KEY, 0, -1)) if e[1].startswith("hostile-")]
    figures.report(
        SCENARIO,
        jobs=len(values) + 1,
        lost=0,
        hostile_values=len(values),
        failed_clearly=len(failed),
        handler_runs=len(ran),
        unpickled=int(marker.exists()),
    )
    assert not marker.exists(), "a pickle in Redis was unpickled"
    assert ran == [], "a hostile value reached the job handler"
    assert alive, log[-3000:]
    missing = {name: (info.state if info else "gone") for name, info in infos.items() if name not in failed}
    assert missing == {}, f"hostile jobs that did not end failed: {missing}"
    for name, info in failed.items():
        assert info.error and info.error_type, name
    assert await embeddings.get_job_counts() == counts(completed=1, failed=len(values))


async def test_a_job_key_with_unexpected_keyword_arguments_fails_clearly():
    handle = await jobqueue.enqueue_product_embedding("hostile-kwargs")
    job = {"t": None, "f": FUNCTION, "a": [{"product_id": "hostile-kwargs"}, 2], "k": {"evil": True}, "et": 1}
    await get_redis().set(embeddings.keys.arq_job(handle.job_id), json.dumps(job))
    with WorkerProcess("tests.faults.workers.StormSettings", **worker_env(worker_lease=2)) as worker:
        good = await jobqueue.enqueue_product_embedding("after-the-kwargs")
        await worker.wait_for(lambda: _state(good.job_id, "completed"), timeout=20, what="a good job afterwards")
    info = await embeddings.get_job(handle.job_id)
    figures.report(SCENARIO, unexpected_kwargs_state=info.state if info else "gone")
    assert info is not None and info.state == "failed", "the job vanished without a record"
    assert info.error and info.error_type


async def _settled(n):
    c = await embeddings.get_job_counts()
    return c["waiting"] == c["active"] == 0 and c["failed"] >= 0


async def _state(job_id, state):
    return (await embeddings.get_job_state(job_id)) == state


def _owned_keys(url: str) -> list[bytes]:
    client = redis.Redis.from_url(url)
    try:
        return [k for pattern in OWNED_PATTERNS for k in client.scan_iter(match=pattern)]
    finally:
        client.close()


CONTENT = {"title": "Birthday", "body": "Tomorrow!"}
BAD_IDS = {
    "star": "p*",
    "question mark": "p?",
    "brackets": "p[1]",
    "blank": "p 1",
    "newline": "p\n1",
    "carriage return": "p\r1",
    "nul": "p\x001",
    "escape": "p\x1b[31m",
    "10 kB": "p" * 10_000,
}


@pytest.mark.parametrize("bad_id", BAD_IDS.values(), ids=BAD_IDS.keys())
async def test_ids_that_could_break_keys_or_logs_are_refused_before_any_write(bad_id, redis_url):
    calls = [
        lambda: jobqueue.enqueue_product_embedding(bad_id),
        lambda: jobqueue.enqueue_taste_profile_embedding("t1", bad_id),
        lambda: jobqueue.enqueue_reminder_dispatch(bad_id, "u1", "PUSH", CONTENT, "2025-12-22T09:00:00Z"),
        lambda: jobqueue.enqueue_many("product-enrichment", [{"product_id": "ok"}, {"product_id": bad_id}]),
    ]
    refused = 0
    for call in calls:
        with pytest.raises(InvalidJobError) as info:
            await call()
        message = str(info.value)
        assert "\n" not in message and len(message) < 300, message
        refused += 1
    figures.report(SCENARIO, refused_ids=figures.scenario(SCENARIO).figures.get("refused_ids", 0) + refused)
    assert _owned_keys(redis_url) == []


async def test_an_oversized_payload_is_refused_at_enqueue_naming_the_limit(redis_url):
    data = {"blob": "x" * (1024 * 1024)}
    with pytest.raises(InvalidJobError) as info:
        await jobqueue.enqueue_reminder_dispatch("s1", "u1", "PUSH", {**CONTENT, "data": data}, "2025-12-22T09:00:00Z")
    figures.report(SCENARIO, max_payload_bytes=MAX_PAYLOAD_BYTES)
    assert str(MAX_PAYLOAD_BYTES) in str(info.value) and len(str(info.value)) < 300
    assert _owned_keys(redis_url) == []
    # Just under the limit is accepted.
    room = MAX_PAYLOAD_BYTES - 1000
    handle = await jobqueue.enqueue_reminder_dispatch(
        "s2", "u1", "PUSH", {**CONTENT, "data": {"blob": "x" * room}}, "2025-12-22T09:00:00Z"
    )
    assert handle.created
