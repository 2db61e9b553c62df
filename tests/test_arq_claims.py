"""arq's claim and bookkeeping in fewer round trips: the same commands, answered the same way.

A worker's pool pipelines (``jobqueue._arq.ClaimSafePipeline``) send the claim's WATCH, EXISTS and
ZSCORE in one write, carry arq's first read of the job inside the claim's transaction, and skip
arq's DEL of an in-progress key FINISH already deleted. Each test checks what arq sees and what
Redis holds, and counts the writes (round trips) made.
"""

import asyncio

import pytest
import redis
import redis.asyncio as aioredis
from redis.exceptions import WatchError

import jobqueue
from bench.counting import client_counting
from jobqueue import product_embedding_queue as embeddings
from jobqueue._arq import make_claims_safe
from tests.support.private_valkey import busy_script, private_valkey
from tests.support.waiting import wait_for
from tests.support.workers import counts, run_burst, runs, settings_for

QUEUE = "arq:queue:jq-test-claims"


@pytest.fixture
async def pool(redis_url):
    client = aioredis.Redis.from_url(redis_url)
    claims = make_claims_safe(client, QUEUE)
    await client.ping()  # connected: the counts below are the commands' own writes
    yield client, claims
    await client.aclose()


async def _claim(client, job_id):
    """arq 0.28's ``Worker.start_jobs`` for one job, as it calls the pipeline."""
    key = f"arq:in-progress:{job_id}"
    async with client.pipeline(transaction=True) as pipe:
        await pipe.watch(key)
        exists = await pipe.exists(key)
        score = await pipe.zscore(QUEUE, job_id)
        if exists or not score:
            return exists, score, None
        pipe.multi()
        pipe.psetex(key, 60_000, b"1")
        return exists, score, await pipe.execute()


async def _first_read(client, job_id):
    """arq 0.28's ``Worker.run_job``: its first read of the job it claimed."""
    async with client.pipeline(transaction=True) as pipe:
        pipe.get(f"arq:job:{job_id}")
        pipe.incr(f"arq:retry:{job_id}")
        pipe.expire(f"arq:retry:{job_id}", 88400)
        return await pipe.execute()


async def test_a_claim_and_the_first_read_of_its_job_take_two_round_trips(pool, redis_client):
    client, claims = pool
    await redis_client.zadd(QUEUE, {"j1": 5})
    await redis_client.set("arq:job:j1", b"the job")
    with client_counting() as sent:
        exists, score, replies = await _claim(client, "j1")
        assert (exists, score, replies) == (0, 5.0, [True])
        assert sent.writes == 2  # WATCH+EXISTS+ZSCORE, then MULTI PSETEX GET INCRBY EXPIRE EXEC
        assert await _first_read(client, "j1") == [b"the job", 1, True]
        assert sent.writes == 2  # answered from the claim's transaction
    assert await redis_client.get("arq:retry:j1") == b"1"
    assert 0 < await redis_client.pttl("arq:in-progress:j1") <= 60_000
    assert claims.fetched == {}
    # Another job's read is not answered from anything: it goes to Redis.
    assert await _first_read(client, "j2") == [None, 1, True]


async def test_a_claim_lost_to_another_worker_reads_and_counts_nothing(pool, redis_client):
    client, claims = pool
    await redis_client.zadd(QUEUE, {"j1": 5})
    await redis_client.set("arq:job:j1", b"the job")
    key = "arq:in-progress:j1"
    async with client.pipeline(transaction=True) as pipe:
        await pipe.watch(key)
        assert await pipe.exists(key) == 0
        assert await pipe.zscore(QUEUE, "j1") == 5.0
        await redis_client.psetex(key, 60_000, b"1")  # another worker claims it first
        pipe.multi()
        pipe.psetex(key, 60_000, b"1")
        with pytest.raises(WatchError):
            await pipe.execute()
    assert await redis_client.get("arq:retry:j1") is None
    assert claims.fetched == {}


async def test_a_job_claimed_elsewhere_or_gone_is_seen_as_arq_would_see_it(pool, redis_client):
    client, _ = pool
    await redis_client.zadd(QUEUE, {"running": 5})
    await redis_client.psetex("arq:in-progress:running", 60_000, b"1")
    assert await _claim(client, "running") == (1, 5.0, None)
    assert await _claim(client, "gone") == (0, None, None)
    assert await redis_client.get("arq:retry:running") is None


async def test_arqs_drop_of_a_claim_finish_released_is_not_sent(pool, redis_client):
    client, claims = pool
    await redis_client.psetex("arq:in-progress:other", 60_000, b"1")
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


async def test_a_claim_meeting_a_busy_redis_is_skipped_and_its_connection_dropped():
    with private_valkey(busy_reply_threshold=100) as server:
        client = aioredis.Redis.from_url(server.connection_url, socket_timeout=5)
        make_claims_safe(client, QUEUE)
        busy = asyncio.create_task(asyncio.to_thread(busy_script, server.connection_url, 1.0))
        try:
            await wait_for(lambda: _is_busy(server.connection_url), what="the server to be busy")
            # The three replies of the claim's first write are all BUSY: "claimed elsewhere".
            assert await _claim(client, "j1") == (1, 1, None)
        finally:
            await busy
        # The connection with unread replies was dropped: the next command reads its own reply.
        assert await client.set("after", "ok") is True
        assert await client.get("after") == b"ok"
        await client.aclose()


async def _is_busy(url):
    def ping():
        probe = redis.Redis.from_url(url, socket_timeout=2)
        try:
            probe.get("probe")
            return False
        except redis.ResponseError as exc:
            return "busy" in str(exc).lower()
        finally:
            probe.close()

    return await asyncio.to_thread(ping)


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


async def test_a_worker_runs_jobs_in_half_the_round_trips_and_each_exactly_once(redis_client):
    n = 200
    ids = [f"rt-{i:03d}" for i in range(n)]
    await jobqueue.enqueue_product_embeddings(ids)
    with client_counting() as sent:
        await run_burst(settings_for(concurrency=20))
    assert await embeddings.get_job_counts() == counts(completed=n)
    assert sorted(r["product_id"] for r in await runs(redis_client)) == ids
    # Per job: the claim 2, START 1, FINISH 1, and the test handler's GET and RPUSH 2 (arq's
    # claim, read and drop took 6 of arq's own before). Polls and ticks add a few in all.
    assert sent.writes / n < 6.5, sent
    assert [k async for k in redis_client.scan_iter("arq:in-progress:*")] == []
    assert [k async for k in redis_client.scan_iter("arq:retry:*")] == []
