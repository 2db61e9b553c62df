"""The worker owns its runs: claim, run and finish are jobqueue's, and nothing of arq's can end a job.

Each test here pins one way the run path broke while arq and jobqueue shared it, or one promise of
the Worker that replaced that seam: the arq command builds it, CLAIM and FINISH are idempotent per
run token, a run keyed by its token cannot disturb a newer run of the same id, code after the
handler cannot leave a job active, overrides that would give arq a say are refused, and an idle
worker waits on Redis instead of polling.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest
import redis
from arq.connections import create_pool
from arq.worker import get_kwargs
from pydantic import BaseModel

import jobqueue
from jobqueue import product_embedding_queue as embeddings
from jobqueue.backend import _scripts
from jobqueue.backend._redis_settings import bound_reads, redis_settings_from_url
from jobqueue.constants import PARKED_SCORE, RECORD_RETRY_S
from jobqueue.errors import ConfigurationError
from jobqueue.settings import get_settings
from jobqueue.worker import Worker, _worker, build_worker_settings
from jobqueue.worker._state import Outcome, Run, WorkerState
from jobqueue.worker.options import QueueOptions
from tests.support.private_valkey import private_valkey
from tests.support.waiting import WorkerProcess, wait_for
from tests.support.workers import (
    RUNS_KEY,
    RunningWorker,
    counts,
    run_burst,
    runs,
    settings_for,
)
from tests.support.workers import test_options as options_for

SETTINGS = "tests.support.workers.EmbeddingTestSettings"


async def _state(handle: Any, state: str) -> bool:
    return await handle.status() == state


async def test_the_arq_command_runs_jobqueues_worker_and_names_it(redis_client):
    handle = await jobqueue.enqueue_product_embedding("via-cli")
    with WorkerProcess(SETTINGS) as worker:
        await worker.wait_for(lambda: _state(handle, "completed"), timeout=20, what="the job to complete")
        assert "in jobqueue.worker.Worker" in worker.output()
    assert [r["try"] for r in await runs(redis_client)] == [1]


async def test_a_settings_class_run_by_arqs_own_worker_refuses_to_start():
    settings = settings_for()
    plain = _worker.ArqWorker(**{**get_kwargs(settings), "burst": True, "handle_signals": False})
    try:
        with pytest.raises(ConfigurationError, match="arq's own Worker, which cannot run jobqueue jobs"):
            await plain.async_run()
    finally:
        await plain.close()


@pytest.mark.parametrize(
    ("option", "value"),
    [("retry_jobs", False), ("allow_abort_jobs", True), ("max_tries", 3), ("job_timeout", 5), ("keep_result", 60)],
)
def test_overrides_that_would_give_arq_a_say_in_a_run_are_refused_by_name(option, value):
    from tests.support.workers import record_handler

    with pytest.raises(ConfigurationError, match=rf"does not take {option} \("):
        build_worker_settings("product-embedding", record_handler, options=options_for(), **{option: value})


def test_overrides_arq_keeps_are_accepted():
    from tests.support.workers import record_handler

    settings = build_worker_settings(
        "product-embedding", record_handler, options=options_for(), job_completion_wait=5, health_check_interval=30
    )
    assert settings.__dict__["job_completion_wait"] == 5


class _Unstorable(BaseModel):
    model_config = {"arbitrary_types_allowed": True}
    value: Any


async def test_a_result_that_cannot_be_serialized_fails_the_attempt_and_never_stays_active(redis_client):
    async def handler(ctx: dict[str, Any], payload: jobqueue.ProductEmbeddingJobPayload) -> _Unstorable:
        await ctx["redis"].rpush(RUNS_KEY, json.dumps({"try": ctx["job_try"]}))
        return _Unstorable(value=object())  # model_dump(mode="json") raises after the handler returned

    handle = await jobqueue.enqueue_product_embedding("unstorable")
    settings = build_worker_settings("product-embedding", handler, options=options_for(attempts=2, backoff_base=0.05))
    await run_burst(settings)
    info = await embeddings.get_job(handle.job_id)
    assert info.state == "failed" and info.error_type == "ResultError"
    assert "cannot be stored as JSON" in info.error and info.attempts_made == 2
    assert [r["try"] for r in await runs(redis_client)] == [1, 2]  # retried like a handler error
    assert await embeddings.get_job_counts() == counts(failed=1)
    # The id is free again: a new enqueue creates and runs a job, no rerun stuck behind a ghost.
    again = await jobqueue.enqueue_product_embedding("unstorable")
    assert again.created


async def test_a_returned_run_and_the_new_run_of_the_same_id_in_one_worker_keep_apart(redis_client):
    # The first run's lease expires while it still runs (a stalled loop: here its renewal is held
    # back), another worker's tick returns the job, and this same worker claims it again. The old
    # run's end must not touch the new run (runs are keyed by token, not job id).
    q = embeddings
    other = WorkerState(q, options_for(), "other-host:1:x", redis_client)
    second_started = asyncio.Event()
    release_first = asyncio.Event()

    async def handler(ctx: dict[str, Any], payload: jobqueue.ProductEmbeddingJobPayload) -> None:
        await ctx["redis"].rpush(RUNS_KEY, json.dumps({"try": ctx["job_try"], "at": time.time()}))
        if ctx["job_try"] == 1:
            state: WorkerState = ctx["jobqueue"]
            state.renewed_at = float("inf")  # this worker renews no lease from now on
            await redis_client.zadd(q.keys.queue, {ctx["job_id"]: PARKED_SCORE}, xx=True)  # the lease expired
            await other.tick()  # another worker returns the run: the job is waiting again
            await asyncio.wait_for(second_started.wait(), 10)  # ...and this worker claims it again
            await asyncio.wait_for(release_first.wait(), 10)
        else:
            second_started.set()
            await asyncio.sleep(0.05)
            release_first.set()  # the old run ends while the new one is still running
            await asyncio.sleep(0.2)

    handle = await jobqueue.enqueue_product_embedding("twice")
    settings = build_worker_settings("product-embedding", handler, options=options_for(concurrency=2, attempts=3))
    worker = await run_burst(settings)
    state = worker.ctx["jobqueue"]
    info = await embeddings.get_job(handle.job_id)
    assert info.state == "completed" and info.attempts_made == 2
    assert [r["try"] for r in await runs(redis_client)] == [1, 2]
    assert state.counters["stale"] == 1 and state.counters["completed"] == 1
    assert await embeddings.get_job_counts() == counts(completed=1)
    assert await redis_client.hlen(q.keys.active) == 0


async def _claim(redis_client, claim_id: str, most: int = 5) -> list[Any]:
    k = embeddings.keys
    return await _scripts.CLAIM(
        redis_client,
        [k.queue, k.active, k.paused, k.seq, k.cron],
        [k.base, "w1", claim_id, 30_000, 3, most, "product-embedding:", 2, 100],
    )


async def test_a_claim_sent_again_after_its_reply_was_lost_answers_the_first_reply(redis_client):
    await jobqueue.enqueue_product_embeddings(["a", "b"])
    first = await _claim(redis_client, "c1")
    again = await _claim(redis_client, "c1")  # what redis-py or our retry sends when the reply is lost
    assert again == first
    ids = first[4::6]
    assert sorted(i.decode() for i in ids) == ["product-embedding:a", "product-embedding:b"]
    assert first[8::6] == [1, 1]  # one attempt each, not two
    assert await redis_client.hget(embeddings.keys.info("product-embedding:a"), "attempts") == b"1"
    assert (await embeddings.get_job("product-embedding:a")).state == "active"
    assert await _claim(redis_client, "c2") == [1, first[1], -1, 0] or (await _claim(redis_client, "c3"))[4:] == []


async def test_a_finish_sent_again_after_its_reply_was_lost_is_not_a_stale_run(redis_client):
    await jobqueue.enqueue_product_embedding("fin")
    reply = await _claim(redis_client, "c1", most=1)
    job_id, token = reply[4].decode(), reply[5].decode()
    state = WorkerState(embeddings, options_for(), "w1", redis_client)
    run = Run(job_id, token, 1, 0, 2)
    record = {"id": job_id, "state": "completed", "result": None, "run": token}
    assert await state.finish(run, Outcome("completed", record)) == 1
    assert await state.finish(run, Outcome("completed", record)) == 1  # the re-send: recorded already
    assert state.counters["stale"] == 0 and state.counters["completed"] == 2
    assert (await embeddings.get_job(job_id)).state == "completed"
    # A retry's re-send is recognised too (the info hash names the run that recorded it).
    await jobqueue.enqueue_product_embedding("fin2")
    reply = await _claim(redis_client, "c2", most=1)
    run = Run(reply[4].decode(), reply[5].decode(), 1, 0, 2)
    assert await state.finish(run, Outcome("retry", error="boom", delay_ms=60_000)) == 1
    assert await state.finish(run, Outcome("retry", error="boom", delay_ms=60_000)) == 1
    assert state.counters["stale"] == 0


async def test_an_idle_worker_picks_a_new_job_without_waiting_a_poll_and_sends_few_commands(monkeypatch):
    with private_valkey() as server:
        monkeypatch.setenv("REDIS_URL", server.connection_url)
        get_settings.cache_clear()
        probe = redis.Redis.from_url(server.connection_url)
        running = RunningWorker(settings_for(tick_interval=0.3))
        async with running:
            await wait_for(lambda: _polled(running, 2), what="the worker to go idle")
            probe.config_resetstat()
            t0 = time.monotonic()
            await wait_for(lambda: _polled(running, 8), timeout=10, what="six idle polls")
            idle_s = time.monotonic() - t0
            stats = probe.info("commandstats")  # scripts' inner commands count too: look at the calls sent
            scripts = stats["cmdstat_evalsha"]["calls"] / idle_s
            waits = stats.get("cmdstat_bzpopmin", {"calls": 0})["calls"] / idle_s
            # One claim a second and one tick per tick_interval (0.3 s here; 1 s by default): no poll.
            assert scripts < 1 + 1 / 0.3 + 1, stats
            assert waits <= 1.5, stats  # one blocking wait of about a second at a time
            handle = await jobqueue.enqueue_product_embedding("wake")
            # Woken by the marker the enqueue wrote, long before its next claim of its own (1 s).
            await wait_for(lambda: _state(handle, "completed"), timeout=0.5, interval=0.005, what="the pickup")
        probe.close()
        await jobqueue.close_queues()


async def _started(worker: Worker) -> bool:
    return "jobqueue" in worker.ctx


async def _polled(running: RunningWorker, n: int) -> bool:
    return running.polls >= n


async def test_a_worker_pool_gives_up_on_a_silent_redis_after_its_read_timeout(monkeypatch):
    # CLIENT PAUSE keeps the connection open and answers nothing, like a black-holed link.
    with private_valkey() as server:
        monkeypatch.setenv("REDIS_URL", server.connection_url)
        monkeypatch.setenv("JOBQUEUE_REDIS_TIMEOUT", "1")
        get_settings.cache_clear()
        probe = redis.Redis.from_url(server.connection_url)
        async with RunningWorker(settings_for()) as worker:
            await wait_for(lambda: _started(worker), what="the worker to start")
            assert worker.ctx["redis"].connection_pool.connection_kwargs["socket_timeout"] == 1.0
        # The same pool a worker makes (arq's, then jobqueue's read bound), against a silent server.
        pool = await create_pool(redis_settings_from_url(server.connection_url, 1.0))
        bound_reads(pool.connection_pool)
        await pool.ping()
        probe.execute_command("CLIENT", "PAUSE", 4000, "ALL")
        t0 = time.monotonic()
        with pytest.raises(redis.exceptions.TimeoutError):
            await pool.get("jq:probe")
        assert time.monotonic() - t0 < 3.0  # one read timeout, not redis-py's ten re-sends of it
        probe.execute_command("CLIENT", "UNPAUSE")
        await pool.aclose()
        probe.close()
        await jobqueue.close_queues()


def test_importing_jobqueue_worker_makes_arqs_create_worker_build_ours():
    import arq.worker

    worker = arq.worker.create_worker(settings_for(), handle_signals=False)
    assert isinstance(worker, Worker) and worker.run_spec is not None
    assert "product_embedding" not in worker.functions  # nothing of arq's can run a queue job


async def test_a_worker_whose_redis_goes_silent_exits_non_zero_in_bounded_time():
    # A paused server keeps every connection open and answers nothing: the worker's calls time out
    # after JOBQUEUE_REDIS_TIMEOUT, CLAIM retries them for RECORD_RETRY_S (20 s), then the worker
    # exits non-zero instead of hanging, for a supervisor to restart it.
    with private_valkey() as server:
        probe = redis.Redis.from_url(server.connection_url)
        env = {"REDIS_URL": server.connection_url, "JOBQUEUE_REDIS_TIMEOUT": "1"}
        with WorkerProcess(SETTINGS, **env) as worker:
            await worker.wait_for(lambda: _said(worker, "started"), timeout=20, what="the worker to start")
            probe.execute_command("CLIENT", "PAUSE", 30_000, "ALL")  # the server answers again after 30 s
            silent_at = time.monotonic()
            await worker.wait_for(lambda: _exited(worker), timeout=29, what="the worker to exit")
            took = time.monotonic() - silent_at
            assert worker.proc is not None and worker.proc.returncode != 0
            assert took < RECORD_RETRY_S + 1 + 8, took  # about 20 s + the read timeout, some slack
        probe.close()


async def _said(worker: WorkerProcess, text: str) -> bool:
    return text in worker.output()


async def _exited(worker: WorkerProcess) -> bool:
    return worker.proc is not None and worker.proc.poll() is not None


async def test_a_returned_run_waits_behind_the_jobs_already_waiting_at_its_priority(redis_client):
    await jobqueue.enqueue_product_embedding("first")
    taken = await _claim(redis_client, "c1", most=1)
    assert taken[4] == b"product-embedding:first"
    await jobqueue.enqueue_product_embeddings(["second", "third"])
    # Its worker died: the lease runs out, and another worker's tick returns the job.
    await redis_client.zadd(embeddings.keys.queue, {"product-embedding:first": PARKED_SCORE}, xx=True)
    await WorkerState(embeddings, options_for(), "w2", redis_client).tick()
    order = (await _claim(redis_client, "c2", most=3))[4::6]
    assert [i.decode() for i in order] == [f"product-embedding:{p}" for p in ("second", "third", "first")]


async def test_a_wake_up_while_the_worker_is_full_waits_for_a_slot_instead_of_spinning():
    # A wake-up that lands while the worker's slots are all taken (a marker popped during a claim
    # that filled them) must leave the loop waiting for a slot. A loop that spun on it left the
    # running handlers a turn every half second: a 10-step run took 10 s.
    async with RunningWorker(settings_for(concurrency=1)) as worker:
        await wait_for(lambda: _looping(worker), what="the worker's loop to start")
        worker.job_counter += 1  # the one slot is taken
        worker._loop_state.wake()
        turns, t0 = 0, time.monotonic()
        while time.monotonic() - t0 < 0.3:
            await asyncio.sleep(0.01)
            turns += 1
        worker.job_counter -= 1
    assert turns >= 10, turns  # about 25 when the loop waits; 1 when it spins


async def _looping(worker: Worker) -> bool:
    return worker._loop_state is not None


async def _count_runs(redis_client, n: int) -> bool:
    return len(await runs(redis_client)) >= n


async def _completed(n: int) -> bool:
    return (await embeddings.get_job_counts())["completed"] >= n


async def test_arqs_counters_health_check_and_shutdown_line_count_the_runs_truly(redis_client, caplog):
    # The worker owns its runs, so arq's own counters are set from each run's outcome: 5 runs
    # completed (2 of them after a retry), 2 failed for good, 2 retried.
    from tests.support.workers import behaviour_key, record_handler

    for pid in ("bad-1", "bad-2"):
        await redis_client.set(behaviour_key(pid), json.dumps({"permanent": True}))
    for pid in ("flaky-1", "flaky-2"):
        await redis_client.set(behaviour_key(pid), json.dumps({"fail": 1}))
    for pid in ("ok-1", "ok-2", "ok-3", "bad-1", "bad-2", "flaky-1", "flaky-2"):
        await jobqueue.enqueue_product_embedding(pid)
    settings = build_worker_settings(
        "product-embedding", record_handler, options=options_for(backoff_base=0.05), health_check_interval=0.1
    )
    expected = "j_complete=5 j_failed=2 j_retried=2 j_ongoing=0"
    running = RunningWorker(settings)
    with caplog.at_level("INFO", logger="arq.worker"):
        async with running as worker:
            await wait_for(
                lambda: _state_is(embeddings, counts(completed=5, failed=2)), timeout=15, what="every job to end"
            )

            async def health() -> bool:
                value = await redis_client.get(worker.health_check_key)
                return value is not None and expected in value.decode()

            await wait_for(health, what=f"the health check to say {expected}")
            assert (worker.jobs_complete, worker.jobs_failed, worker.jobs_retried) == (5, 2, 2)
    shutdown = [r.getMessage() for r in caplog.records if r.getMessage().startswith("shutdown on")]
    assert shutdown and "5 jobs complete ◆ 2 failed ◆ 2 retries" in shutdown[-1], shutdown


async def _state_is(queue: Any, wanted: dict[str, int]) -> bool:
    return await queue.get_job_counts() == wanted


async def test_an_idle_worker_writes_at_most_about_once_a_second(monkeypatch):
    # At its defaults (a 1 s tick, a 30 s lease): its ticks write a heartbeat every 10 s, its
    # scheduler renews the queue's tended mark every 5 s, arq's health check every 10 s. It used to
    # write a heartbeat every tick and the mark every pass: about 3 changes a second, idle.
    from tests.support.workers import record_handler

    with private_valkey() as server:
        monkeypatch.setenv("REDIS_URL", server.connection_url)
        get_settings.cache_clear()
        probe = redis.Redis.from_url(server.connection_url)
        settings = build_worker_settings("product-embedding", record_handler, options=QueueOptions(concurrency=1))
        running = RunningWorker(settings)
        async with running:
            await wait_for(lambda: _polled(running, 2), what="the worker to go idle")
            before, t0 = _changes(probe), time.monotonic()
            # Each of arq's poll iterations lasts 0.5 s: 16 of them are about 8 idle seconds.
            await wait_for(lambda: _polled(running, 18), timeout=20, what="8 idle seconds")
            changes, idle_s = _changes(probe) - before, time.monotonic() - t0
        probe.close()
        await jobqueue.close_queues()
    assert changes <= idle_s, (changes, idle_s)


def _changes(client: redis.Redis) -> int:
    """Writes the server has applied so far, inside scripts too (what its append-only file grows by)."""
    return int(client.info("persistence")["rdb_changes_since_last_save"])
