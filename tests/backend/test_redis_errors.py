"""Redis answering with an error, not just going away: BUSY, READONLY, OOM, an eviction policy,
and a worker started while Redis does not answer. Each on a Valkey of the test's own."""

import asyncio
import json
import subprocess
import sys
import time

import pytest
import redis

import jobqueue
from jobqueue import RedisCommandError, RedisUnavailableError
from jobqueue import product_embedding_queue as embeddings
from jobqueue.settings import get_settings
from jobqueue.worker.builder import warn_unless_noeviction
from tests.support.private_valkey import busy_script, is_busy, private_valkey
from tests.support.waiting import ROOT, WorkerProcess, wait_for
from tests.support.workers import RunningWorker, runs, settings_for

SETTINGS = "tests.support.workers.EmbeddingTestSettings"


@pytest.fixture
def use_url(monkeypatch):
    def use(url: str) -> None:
        monkeypatch.setenv("REDIS_URL", url)
        get_settings.cache_clear()

    return use


async def test_an_enqueue_during_a_long_script_says_redisis_busy(use_url):
    with private_valkey(busy_reply_threshold=100) as server:
        use_url(server.connection_url)
        busy = asyncio.create_task(asyncio.to_thread(busy_script, server.connection_url, 1.5))
        try:
            await wait_for(lambda: is_busy(server.connection_url), what="the server to be busy")
            with pytest.raises(RedisUnavailableError, match="busy running a long script"):
                await jobqueue.enqueue_product_embedding("p1")
        finally:
            await busy
        assert (await jobqueue.enqueue_product_embedding("p1")).created
        await jobqueue.close_queues()


async def test_a_worker_rides_out_a_long_script_and_loses_no_job(use_url, monkeypatch):
    with private_valkey(busy_reply_threshold=100) as server:
        use_url(server.connection_url)
        client = redis.asyncio.Redis.from_url(server.connection_url)
        with WorkerProcess(SETTINGS, REDIS_URL=server.connection_url) as worker:
            await jobqueue.enqueue_product_embedding("before")
            await worker.wait_for(lambda: _completed(1), timeout=20, what="the first job")
            await asyncio.to_thread(busy_script, server.connection_url, 2.0)
            await jobqueue.enqueue_product_embedding("after")
            await worker.wait_for(lambda: _completed(2), timeout=20, what="the job after the busy spell")
            assert worker.proc.poll() is None, worker.output()[-3000:]
            assert "Traceback" not in worker.output()
        assert [r["product_id"] for r in await runs(client)] == ["before", "after"]
        await client.aclose()
        await jobqueue.close_queues()


async def _completed(n):
    return (await embeddings.get_job_counts())["completed"] >= n


async def test_a_read_only_replica_is_reported_as_such(use_url):
    with private_valkey(replicaof="127.0.0.1 1") as server:
        use_url(server.connection_url)
        with pytest.raises(RedisUnavailableError, match="read-only replica"):
            await jobqueue.enqueue_product_embedding("p1")
        await jobqueue.close_queues()


async def test_out_of_memory_is_a_clear_command_error(use_url):
    with private_valkey(maxmemory="4mb", maxmemory_policy="noeviction") as server:
        use_url(server.connection_url)
        filler = redis.Redis.from_url(server.connection_url)
        with pytest.raises(redis.exceptions.OutOfMemoryError):
            for i in range(10_000):
                filler.set(f"filler:{i}", "x" * 10_000)
        filler.close()
        with pytest.raises(RedisCommandError, match="out of memory") as caught:
            await jobqueue.enqueue_product_embedding("p1")
        assert "noeviction" in str(caught.value)
        await jobqueue.close_queues()


async def test_a_worker_warns_when_redis_may_evict_keys(caplog):
    with private_valkey(maxmemory_policy="allkeys-lru") as server:
        client = redis.asyncio.Redis.from_url(server.connection_url)
        assert await warn_unless_noeviction(client, "product-embedding") == "allkeys-lru"
        await client.aclose()
    assert "jobqueue requires maxmemory-policy noeviction" in caplog.text


async def test_a_worker_started_without_redis_says_so_at_once_and_gives_up(unused_port):
    url = f"redis://:s3cret@127.0.0.1:{unused_port}/0"
    env = {"REDIS_URL": url, "JOBQUEUE_REDIS_STARTUP_WAIT": "2", "PYTHONPATH": str(ROOT)}
    started = time.monotonic()
    proc = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "arq", SETTINGS],
        env={**__import__("os").environ, **env},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    took = time.monotonic() - started
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert f"Redis is not answering at redis://***@127.0.0.1:{unused_port}/0" in out
    assert "gave up after 2s" in out
    assert "s3cret" not in out and "Traceback" not in out
    print(f"worker gave up after {took:.1f}s")


@pytest.fixture
def unused_port():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_mismatched_arq_stops_the_worker_with_the_version_it_needs(monkeypatch):
    import arq.version

    from jobqueue.errors import ConfigurationError
    from jobqueue.worker import _arq

    monkeypatch.setattr(_arq, "_verified", False)
    monkeypatch.setattr(arq.version, "VERSION", "0.29.0")
    with pytest.raises(ConfigurationError, match=r"jobqueue needs arq 0\.28\.x .*arq 0\.29\.0 is installed"):
        _arq.verify_arq(["queue_name"])


def test_an_arq_whose_poll_changed_stops_the_worker(monkeypatch):
    # jobqueue's Worker replaces arq's _poll_iteration and relies on what it did: an arq whose
    # iteration no longer beats its heart (cron, health checks) must not be run as 0.28's.
    from jobqueue.errors import ConfigurationError
    from jobqueue.worker import _arq, _worker

    async def _poll_iteration(self):  # an iteration without arq's heartbeat
        pass

    monkeypatch.setattr(_arq, "_verified", False)
    monkeypatch.setattr(_worker.ArqWorker, "_poll_iteration", _poll_iteration)
    with pytest.raises(ConfigurationError, match=r"arq's Worker._poll_iteration is not the one jobqueue's Worker"):
        _arq.verify_arq(["queue_name"])


async def test_workers_report_their_true_counts_and_heartbeat(redis_client):
    # arq's own health line counts every run as "retried" (each run ends with Retry(), so arq
    # leaves the job to our scripts): the true figures of each worker are in get_workers().
    from tests.support.workers import RunningWorker, behaviour_key, settings_for

    await redis_client.set(behaviour_key("bad"), json.dumps({"permanent": True}))
    await jobqueue.enqueue_product_embeddings(["good", "bad"])
    async with RunningWorker(settings_for(tick_interval=0.02)):
        await wait_for(lambda: _settled(2), what="both jobs to finish")
        await wait_for(lambda: _reported(completed=1, failed=1), what="the worker to report its counts")
        (worker,) = await embeddings.get_workers()
    assert worker["concurrency"] == 1 and worker["running"] == 0
    assert worker["pid"] > 0 and worker["host"]
    assert worker["last_heartbeat"] >= worker["started_at"] > 0


async def _settled(n):
    c = await embeddings.get_job_counts()
    return c["completed"] + c["failed"] >= n


async def _reported(**expected):
    workers = await embeddings.get_workers()
    return len(workers) == 1 and all(workers[0][k] == v for k, v in expected.items())


async def test_a_claim_that_meets_a_busy_redis_waits_it_out_instead_of_ending_the_worker(use_url):
    # A delayed job falls due while Redis is busy running a script: the worker's CLAIM meets BUSY,
    # waits it out, and claims the job once Redis answers again.
    with private_valkey(busy_reply_threshold=100) as server:
        use_url(server.connection_url)
        running = RunningWorker(settings_for())
        async with running as worker:
            await wait_for(lambda: _worker_started(worker), what="the worker to start")
            handle = await jobqueue.enqueue_product_embedding("during-busy", delay=0.4)
            await asyncio.to_thread(busy_script, server.connection_url, 1.5)
            await wait_for(lambda: _state(handle, "completed"), what="the job to run once Redis answers")
            assert running.task is not None and not running.task.done()
        info = await embeddings.get_job(handle.job_id)
        # Due at 0.4 s, inside the 1.5 s script: the claim met BUSY and started it only afterwards.
        assert (info.started_at - info.enqueued_at).total_seconds() >= 1.0
        await jobqueue.close_queues()


async def _worker_started(worker):
    return "jobqueue" in worker.ctx


async def _state(handle, state):
    return await handle.status() == state


async def test_a_worker_started_while_redis_is_out_of_memory_waits_instead_of_dying(use_url):
    with private_valkey(maxmemory="4mb", maxmemory_policy="noeviction") as server:
        use_url(server.connection_url)
        await jobqueue.enqueue_product_embedding("queued-before")
        filler = redis.Redis.from_url(server.connection_url)
        with pytest.raises(redis.exceptions.OutOfMemoryError):
            for i in range(10_000):
                filler.set(f"filler:{i}", "x" * 10_000)
        with WorkerProcess(SETTINGS, REDIS_URL=server.connection_url) as worker:
            await worker.wait_for(lambda: _said(worker, "out of memory"), timeout=30, what="the OOM warning")
            assert worker.proc.poll() is None, worker.output()[-3000:]
            for key in filler.scan_iter("filler:*", count=1000):  # memory comes back
                filler.delete(key)
            await jobqueue.enqueue_product_embedding("queued-after")
            await worker.wait_for(lambda: _completed(2), timeout=40, what="both jobs after memory came back")
            assert "Traceback" not in worker.output()
        filler.close()
        await jobqueue.close_queues()


async def _said(worker, text):
    return text in worker.output().lower()
