"""arq's claim and its bookkeeping of a run in one round trip: the same decisions and writes.

A worker's pool pipelines (``jobqueue._arq.ClaimSafePipeline``) answer arq 0.28's claim (WATCH,
EXISTS, ZSCORE, MULTI/PSETEX/EXEC), its first read of the job (GET, INCR/EXPIRE of the try count)
and our START from one script (``claim.lua``), and skip arq's DEL of an in-progress key FINISH
already deleted. Each test drives the pipeline exactly as arq's ``Worker`` calls it, checks what
arq sees and what Redis holds, and counts the writes (round trips) made.
"""

import asyncio
import time

import pytest
import redis
import redis.asyncio as aioredis
from redis.exceptions import WatchError

import jobqueue
from bench.counting import client_counting
from jobqueue import product_embedding_queue as embeddings
from jobqueue._arq import make_claims_safe
from jobqueue._state import WorkerState
from jobqueue.options import queue_options
from tests.support.private_valkey import busy_script, is_busy, private_valkey
from tests.support.waiting import wait_for
from tests.support.workers import counts, run_burst, runs, settings_for

QUEUE = embeddings.keys.queue
TTL_MS = 60_000


@pytest.fixture
async def pool(redis_url):
    """arq's pool in a worker: its pipelines claim with the worker's one script."""
    client = aioredis.Redis.from_url(redis_url)
    state = WorkerState(embeddings, queue_options(embeddings.name), "test-worker", client)
    claims = make_claims_safe(client, QUEUE, TTL_MS)
    claims.claim = state.claim
    await client.ping()  # connected: the counts below are the commands' own writes
    yield client, claims
    await client.aclose()


async def _claim(client, job_id, ttl_ms=TTL_MS):
    """arq 0.28's ``Worker.start_jobs`` for one job, as it calls the pipeline."""
    key = f"arq:in-progress:{job_id}"
    async with client.pipeline(transaction=True) as pipe:
        await pipe.watch(key)
        exists = await pipe.exists(key)
        score = await pipe.zscore(QUEUE, job_id)
        if exists or not score or score > time.time() * 1000:
            return exists, score, None
        pipe.multi()
        pipe.psetex(key, ttl_ms, b"1")
        return exists, score, await pipe.execute()


async def _first_read(client, job_id):
    """arq 0.28's ``Worker.run_job``: its first read of the job it claimed."""
    async with client.pipeline(transaction=True) as pipe:
        pipe.get(f"arq:job:{job_id}")
        pipe.incr(f"arq:retry:{job_id}")
        pipe.expire(f"arq:retry:{job_id}", 88400)
        return await pipe.execute()


async def _queued(job_id):
    await jobqueue.enqueue_product_embedding(job_id.split(":", 1)[1])
    return job_id


async def test_a_claim_its_first_read_and_start_take_one_round_trip(pool, redis_client):
    client, claims = pool
    job_id = await _queued("product-embedding:p1")
    job = await redis_client.get(f"arq:job:{job_id}")
    with client_counting() as sent:
        exists, score, replies = await _claim(client, job_id)
        assert exists == 0 and score is not None and score < 0 and replies == [True]
        assert await _first_read(client, job_id) == [job, 1, True]
        assert sent.writes == 1
    token, start = claims.take_started(job_id)
    assert start[0] == 1 and start[1] == 1  # run it: attempt 1
    assert (await redis_client.hget(embeddings.keys.active, job_id)).decode().split("|")[1] == token
    assert await redis_client.get(f"arq:retry:{job_id}") == b"1"
    assert 0 < await redis_client.pttl(f"arq:in-progress:{job_id}") <= TTL_MS
    assert claims.fetched == {} and claims.started == {} and claims.claimed == set()


async def test_a_job_claimed_elsewhere_gone_or_not_due_is_seen_as_arq_would_see_it(pool, redis_client):
    client, claims = pool
    running = await _queued("product-embedding:running")
    await redis_client.psetex(f"arq:in-progress:{running}", TTL_MS, b"1")
    exists, score, replies = await _claim(client, running)
    assert exists == 1 and score is not None and replies is None
    assert await _claim(client, "product-embedding:gone") == (0, None, None)
    await jobqueue.enqueue_product_embedding("later", delay=60)
    exists, score, replies = await _claim(client, "product-embedding:later")
    assert exists == 0 and score > time.time() * 1000 and replies is None
    for job_id in (running, "product-embedding:later"):
        assert await redis_client.get(f"arq:retry:{job_id}") is None
        assert not await redis_client.hexists(embeddings.keys.active, job_id)
    assert claims.started == {} and claims.fetched == {}


async def test_arqs_claim_of_a_job_the_script_did_not_claim_is_skipped_not_sent(pool, redis_client):
    # arq's clock reads the due time after the script's: it may go on to MULTI for a job the
    # script left. That claim is refused as one lost to another worker; the next poll takes it.
    client, _ = pool
    job_id = await _queued("product-embedding:p1")
    key = f"arq:in-progress:{job_id}"
    await redis_client.psetex(key, TTL_MS, b"1")
    async with client.pipeline(transaction=True) as pipe:
        await pipe.watch(key)
        assert await pipe.exists(key) == 1
        await pipe.zscore(QUEUE, job_id)
        pipe.multi()
        pipe.psetex(key, TTL_MS, b"1")
        with pytest.raises(WatchError):
            await pipe.execute()
    assert await redis_client.get(f"arq:retry:{job_id}") is None


async def test_arqs_own_in_progress_ttl_is_kept_when_it_differs(pool, redis_client):
    client, claims = pool
    job_id = await _queued("product-embedding:p1")
    assert (await _claim(client, job_id, ttl_ms=600_000))[2] == [True]
    assert 60_000 < await redis_client.pttl(f"arq:in-progress:{job_id}") <= 600_000
    assert claims.in_progress_ms == 600_000


async def test_arqs_drop_of_a_claim_finish_released_is_not_sent(pool, redis_client):
    client, claims = pool
    await redis_client.psetex("arq:in-progress:other", TTL_MS, b"1")
    claims.released.add("done")
    with client_counting() as sent:
        async with client.pipeline(transaction=True) as tr:
            tr.delete("arq:in-progress:done")
            assert await tr.execute() == [1]
        assert sent.writes == 0
        async with client.pipeline(transaction=True) as tr:  # not released: sent as it is
            tr.delete("arq:in-progress:other")
            assert await tr.execute() == [1]
        assert sent.writes == 1
    assert claims.released == set()
    assert not await redis_client.exists("arq:in-progress:other")


async def test_a_claim_meeting_a_busy_redis_is_skipped():
    with private_valkey(busy_reply_threshold=100) as server:
        client = aioredis.Redis.from_url(server.connection_url, socket_timeout=5)
        state = WorkerState(embeddings, queue_options(embeddings.name), "test-worker", client)
        make_claims_safe(client, QUEUE, TTL_MS).claim = state.claim
        busy = asyncio.create_task(asyncio.to_thread(busy_script, server.connection_url, 1.0))
        try:
            await wait_for(lambda: is_busy(server.connection_url), what="the server to be busy")
            assert await _claim(client, "product-embedding:p1") == (1, 1, None)  # "claimed elsewhere"
        finally:
            await busy
        assert await client.set("after", "ok") is True
        assert await client.get("after") == b"ok"
        await client.aclose()


async def test_a_pooled_connection_with_unread_data_is_replaced_before_use(pool):
    client, _ = pool
    conn = await client.connection_pool.get_connection()
    await conn.send_command("ECHO", "stale reply")  # sent, never read
    await wait_for(lambda: _buffered(conn), what="the stale reply to arrive")
    await client.connection_pool.release(conn)
    assert await client.echo("fresh reply") == b"fresh reply"


async def _buffered(conn):
    await asyncio.sleep(0)
    return bool(conn._reader._buffer)


async def test_commands_packed_by_hiredis_are_the_bytes_redis_py_packs(pool):
    client, _ = pool
    conn = await client.connection_pool.get_connection()
    try:
        python_pack = type(conn).pack_command
        for args in [
            ("SET", "k", "ünï"),
            ("ZADD", "z", 0.1, "m"),
            ("EVALSHA", "abc", 1, "k", 10**20, 1.5e-7, b"\x00\xff"),
        ]:
            assert conn.pack_command(*args) == [b"".join(python_pack(conn, *args))]
        with pytest.raises(redis.DataError):
            conn.pack_command("SET", "k", True)  # refused as redis-py refuses it
        assert b"".join(conn.pack_command("CONFIG GET", "maxmemory")) == b"".join(
            python_pack(conn, "CONFIG GET", "maxmemory")
        )
    finally:
        await client.connection_pool.release(conn)


async def test_a_worker_runs_each_job_once_in_two_round_trips_of_its_own(redis_client):
    n = 200
    ids = [f"rt-{i:03d}" for i in range(n)]
    await jobqueue.enqueue_product_embeddings(ids)
    with client_counting() as sent:
        await run_burst(settings_for(concurrency=20))
    assert await embeddings.get_job_counts() == counts(completed=n)
    assert sorted(r["product_id"] for r in await runs(redis_client)) == ids
    assert all(r["try"] == 1 for r in await runs(redis_client))
    # Per job: CLAIM 1 and FINISH 1, plus the test handler's GET and RPUSH (arq's claim, read and
    # drop and our START took 6 more before). Polls and ticks add a few in all.
    assert sent.writes / n < 4.5, sent
    assert [k async for k in redis_client.scan_iter("arq:in-progress:*")] == []
    assert [k async for k in redis_client.scan_iter("arq:retry:*")] == []
