"""Auto-pipelining: enqueues made in one event-loop turn share one connection and are written
without waiting for each other's replies, each caller getting its own handle or its own error."""

from __future__ import annotations

import asyncio
import math
import time
from typing import Any

import pytest
import redis

import jobqueue
from jobqueue import product_embedding_queue as embeddings
from jobqueue.backend import _autopipeline
from jobqueue.backend.connection import get_redis
from jobqueue.errors import InvalidJobError, RedisCommandError, RedisUnavailableError
from tests.support.private_valkey import private_valkey
from tests.support.waiting import free_port, wait_for


class Sends:
    """Counts the writes that carry an enqueue, on any connection: a pipeline, or the calls that
    gathered in a turn, are packed and written at once."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.count = 0  # writes that carry an enqueue (a new connection's handshake is not one)
        writelines = asyncio.StreamWriter.writelines

        def counted(writer: asyncio.StreamWriter, chunks: Any) -> None:
            chunks = list(chunks)
            if any(b"EVALSHA" in bytes(chunk) for chunk in chunks):
                self.count += 1
            writelines(writer, chunks)

        monkeypatch.setattr(asyncio.StreamWriter, "writelines", counted)


async def _client_ids(redis_client) -> set[int]:
    """Clients on the tests' database (the server may be serving others, on theirs)."""
    db = redis_client.connection_pool.connection_kwargs.get("db", 0)
    return {int(c["id"]) for c in await redis_client.client_list() if int(c["db"]) == db}


async def _warm() -> None:
    """Load the enqueue script and open the pool's first connection, so neither is counted."""
    await jobqueue.enqueue_product_embedding("warm")


async def test_a_hundred_concurrent_enqueues_use_one_connection_and_are_written_as_they_gather(
    redis_client, monkeypatch
):
    await _warm()
    before = await _client_ids(redis_client)
    sends = Sends(monkeypatch)
    handles = await asyncio.gather(*(jobqueue.enqueue_product_embedding(f"ap{i}") for i in range(100)))
    # The batch takes its connection when the turn ends: the calls gathered meanwhile go in one write.
    assert sends.count == 1
    assert [h.job_id for h in handles] == [f"product-embedding:ap{i}" for i in range(100)]
    assert all(h.created for h in handles)
    # Its connection open, every WRITE_AT jobs gathered are written at once, before the turn ends.
    sends.count = 0
    again = await asyncio.gather(*(jobqueue.enqueue_product_embedding(f"aq{i}") for i in range(100)))
    assert sends.count == math.ceil(100 / _autopipeline.WRITE_AT)
    assert all(h.created for h in again)
    new_connections = await _client_ids(redis_client) - before
    assert new_connections == set()  # the pool's one warm connection carried them all
    waiting = [j.job_id for j in await embeddings.get_jobs("waiting", end=300)]
    assert waiting == ["product-embedding:warm", *(h.job_id for h in handles), *(h.job_id for h in again)]


async def test_without_auto_pipelining_each_enqueue_is_its_own_round_trip(monkeypatch):
    monkeypatch.setenv("JOBQUEUE_AUTO_PIPELINE", "false")
    jobqueue.get_settings.cache_clear()
    await _warm()
    sends = Sends(monkeypatch)
    await asyncio.gather(*(jobqueue.enqueue_product_embedding(f"np{i}") for i in range(20)))
    assert sends.count == 20


async def test_the_same_id_twice_in_one_turn_is_created_once_and_calls_keep_their_order(redis_client):
    first, second, other = await asyncio.gather(
        jobqueue.enqueue_product_embedding("same", triggered_by="first"),
        jobqueue.enqueue_product_embedding("same", triggered_by="second"),
        jobqueue.enqueue_product_embedding("other"),
    )
    assert (first.created, second.created, other.created) == (True, False, True)
    job = await embeddings.get_job(first.job_id)
    assert job.payload["triggered_by"] == "first"  # the first call ran first; the second changed nothing
    # FIFO within a priority follows the order of the calls.
    assert [j.job_id for j in await embeddings.get_jobs("waiting")] == [first.job_id, other.job_id]


async def test_one_callers_bad_input_fails_only_that_caller():
    ok, bad, also_ok = await asyncio.gather(
        jobqueue.enqueue_product_embedding("fine-1"),
        jobqueue.enqueue_product_embedding(""),
        jobqueue.enqueue_product_embedding("fine-2"),
        return_exceptions=True,
    )
    assert isinstance(bad, InvalidJobError)
    assert ok.created and also_ok.created


async def test_a_script_error_fails_only_its_own_call(redis_client):
    # The enrichment queue's FIFO counter is not a number: its enqueue script fails (INCR), before
    # writing anything; the embedding enqueues of the same batch are not touched.
    await redis_client.set("jq:product-enrichment:seq", "not-a-number")
    before, broken, after = await asyncio.gather(
        jobqueue.enqueue_product_embedding("beside-1"),
        jobqueue.enqueue_product_enrichment("broken"),
        jobqueue.enqueue_product_embedding("beside-2"),
        return_exceptions=True,
    )
    assert isinstance(broken, RedisCommandError)
    assert "not an integer" in str(broken)
    assert before.created and after.created
    assert (await embeddings.get_job_counts())["waiting"] == 2


async def test_a_script_error_in_a_merged_call_is_answered_call_by_call(redis_client):
    # One queue's calls share one script call; when it fails, each call is sent again on its own.
    # With the FIFO counter broken, ready jobs fail, while a delayed job (no counter) is written.
    await redis_client.set("jq:product-embedding:seq", "not-a-number")
    ready, delayed, also_ready = await asyncio.gather(
        jobqueue.enqueue_product_embedding("ready-1"),
        jobqueue.enqueue_product_embedding("later", delay=60),
        jobqueue.enqueue_product_embedding("ready-2"),
        return_exceptions=True,
    )
    assert isinstance(ready, RedisCommandError) and isinstance(also_ready, RedisCommandError)
    assert ready is not also_ready  # each caller its own error
    assert delayed.created
    assert await embeddings.get_job_state(delayed.job_id) == "delayed"


async def test_redis_unavailable_fails_every_caller_with_its_own_error(monkeypatch):
    monkeypatch.setenv("REDIS_URL", f"redis://127.0.0.1:{free_port()}/3")
    monkeypatch.setenv("JOBQUEUE_REDIS_TIMEOUT", "1")
    jobqueue.get_settings.cache_clear()
    await jobqueue.close_queues()
    outcomes = await asyncio.gather(
        *(jobqueue.enqueue_product_embedding(f"down{i}") for i in range(5)), return_exceptions=True
    )
    assert all(isinstance(o, RedisUnavailableError) for o in outcomes), outcomes
    assert "127.0.0.1" in str(outcomes[0])


@pytest.mark.parametrize("turns", [0, 1, 2, 3, 5])
@pytest.mark.parametrize("cancelled", [0, 1])  # the first caller of the turn, or one that joined it
async def test_cancelling_one_waiting_caller_leaves_the_batch_to_the_others(redis_client, turns, cancelled):
    """Cancelled before the batch is sent (few turns), its job is never written; cancelled while
    the batch is in flight, it stops waiting; either way the others get their handles."""
    tasks = [asyncio.create_task(jobqueue.enqueue_product_embedding(f"c{i}")) for i in range(3)]
    for _ in range(turns):
        await asyncio.sleep(0)
    tasks[cancelled].cancel()
    outcomes = await asyncio.gather(*tasks, return_exceptions=True)
    others = [o for i, o in enumerate(outcomes) if i != cancelled]
    assert all(o.created for o in others)
    written = await redis_client.exists(f"arq:job:product-embedding:c{cancelled}")
    if isinstance(outcomes[cancelled], asyncio.CancelledError):
        assert written in (0, 1)  # not sent yet (0), or sent before the cancel (1)
    else:
        assert outcomes[cancelled].created and written == 1
    # The batching goes on working for the next turn.
    assert (await jobqueue.enqueue_product_embedding("after")).created


@pytest.mark.parametrize("cancelled", [0, 1])
async def test_a_caller_cancelled_before_the_batch_is_sent_writes_nothing(redis_client, cancelled):
    tasks = [asyncio.create_task(jobqueue.enqueue_product_embedding(f"early{i}")) for i in range(3)]
    await asyncio.sleep(0)  # every task has had its step: the first yields, the others joined it
    tasks[cancelled].cancel()
    outcomes = await asyncio.gather(*tasks, return_exceptions=True)
    assert isinstance(outcomes[cancelled], asyncio.CancelledError)
    assert not await redis_client.exists(f"arq:job:product-embedding:early{cancelled}")
    assert all(o.created for i, o in enumerate(outcomes) if i != cancelled)


async def test_product_processing_writes_both_queues_in_one_round_trip(monkeypatch):
    await _warm()
    await jobqueue.enqueue_product_enrichment("warm")
    sends = Sends(monkeypatch)
    both = await jobqueue.enqueue_product_processing("pp1")
    assert sends.count == 1
    assert both.enrichment_job.created and both.embedding_job.created


async def test_a_turn_past_a_thousand_jobs_is_split_into_script_calls_of_at_most_a_thousand(monkeypatch):
    await _warm()
    sends = Sends(monkeypatch)
    calls = []
    merge = _autopipeline._merge

    def recorded(args: list[list[Any]]) -> Any:
        merged = merge(args)
        calls.extend((len(call) - 1) // 4 for call, _ in merged)
        return merged

    monkeypatch.setattr(_autopipeline, "_merge", recorded)
    first, second, single = await asyncio.gather(
        embeddings.add_bulk([{"product_id": f"bulk-a{i}"} for i in range(600)]),
        embeddings.add_bulk([{"product_id": f"bulk-b{i}"} for i in range(600)]),
        jobqueue.enqueue_product_embedding("single"),
    )
    assert sends.count == 1
    assert calls == [600, 601]  # the single joined the second call: each at most 1,000 jobs
    assert all(h.created for h in [*first, *second, single])
    assert [h.job_id for h in first] == [f"product-embedding:bulk-a{i}" for i in range(600)]
    assert (await embeddings.get_job_counts())["waiting"] == 1202


async def _batch_connection_open() -> Any:
    """The batch's connection once it has been taken (after a first turn of several calls)."""
    await asyncio.gather(*(jobqueue.enqueue_product_embedding(f"open{i}") for i in range(3)))
    batch = _autopipeline.batch_for(get_redis())
    assert batch.connection is not None and _autopipeline._open(batch.connection)
    return batch


async def test_a_silent_redis_fails_the_callers_in_flight_within_the_timeout_and_the_next_turn_works(
    monkeypatch,
):
    # CLIENT PAUSE keeps the connection open and answers nothing, like a black-holed link.
    with private_valkey() as server:
        monkeypatch.setenv("REDIS_URL", server.connection_url)
        monkeypatch.setenv("JOBQUEUE_REDIS_TIMEOUT", "0.5")
        jobqueue.get_settings.cache_clear()
        await jobqueue.close_queues()
        await _batch_connection_open()
        admin = redis.Redis.from_url(server.connection_url)
        try:
            admin.execute_command("CLIENT", "PAUSE", 3000, "ALL")
            started = time.monotonic()
            outcomes = await asyncio.gather(
                *(jobqueue.enqueue_product_embedding(f"silent{i}") for i in range(40)), return_exceptions=True
            )
            waited = time.monotonic() - started
            assert all(isinstance(o, RedisUnavailableError) for o in outcomes), outcomes
            assert "no answer within 0.5s" in str(outcomes[0])
            assert waited < 2.0  # one timeout for the lot, not one per write
            admin.execute_command("CLIENT", "UNPAUSE")
            again = await asyncio.gather(*(jobqueue.enqueue_product_embedding(f"back{i}") for i in range(40)))
            assert all(h.created for h in again)
        finally:
            admin.close()
            await jobqueue.close_queues()


async def test_a_batch_connection_the_server_closed_is_made_again_and_loses_no_call(redis_client):
    batch = await _batch_connection_open()
    killed = batch.connection
    host, port = killed._writer.get_extra_info("sockname")[:2]
    assert await redis_client.execute_command("CLIENT", "KILL", "ADDR", f"{host}:{port}", "SKIPME", "yes") == 1

    async def closed_seen() -> bool:
        return not _autopipeline._open(killed)

    await wait_for(closed_seen, what="the batch's connection to see its end")
    handles = await asyncio.gather(*(jobqueue.enqueue_product_embedding(f"after-kill{i}") for i in range(40)))
    assert all(h.created for h in handles)
    assert batch.connection is killed and _autopipeline._open(killed)  # the same connection, made again


async def test_calls_redis_answers_noscript_are_sent_again_with_the_script_loaded(redis_client):
    await _batch_connection_open()
    await redis_client.script_flush()
    handles = await asyncio.gather(*(jobqueue.enqueue_product_embedding(f"reloaded{i}") for i in range(40)))
    assert all(h.created for h in handles)
    assert (await embeddings.get_job_counts())["waiting"] == 43
