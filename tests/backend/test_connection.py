"""The shared pool, health checks and clear errors when Redis is unreachable."""

import asyncio
import subprocess
import sys
import time

import pytest

import jobqueue
from jobqueue import RedisUnavailableError
from jobqueue.settings import get_settings, redact_url
from tests.support.waiting import ROOT, free_port


@pytest.fixture
def unreachable(monkeypatch):
    port = free_port()
    monkeypatch.setenv("REDIS_URL", f"redis://app:s3cret@127.0.0.1:{port}/0")
    monkeypatch.setenv("JOBQUEUE_REDIS_TIMEOUT", "2")
    get_settings.cache_clear()
    yield port
    get_settings.cache_clear()


async def test_unreachable_redis_gives_a_clear_error_without_the_password(unreachable):
    await jobqueue.close_queues()
    started = time.monotonic()
    with pytest.raises(RedisUnavailableError) as info:
        await jobqueue.enqueue_product_embedding("p1")
    assert time.monotonic() - started < 5
    message = str(info.value)
    assert f"127.0.0.1:{unreachable}" in message and "s3cret" not in message
    assert info.value.url == f"redis://app:***@127.0.0.1:{unreachable}/0"
    for call in (jobqueue.product_embedding_queue.get_job_counts, jobqueue.product_embedding_queue.pause):
        with pytest.raises(RedisUnavailableError):
            await call()


async def test_health_check_is_false_when_unreachable_and_never_raises(unreachable):
    await jobqueue.close_queues()
    started = time.monotonic()
    assert await jobqueue.check_queues_health() is False
    assert time.monotonic() - started < 5


async def test_health_check_is_true_with_redis_and_close_is_idempotent():
    assert await jobqueue.check_queues_health() is True
    await jobqueue.close_queues()
    await jobqueue.close_queues()
    assert await jobqueue.check_queues_health() is True


async def test_one_pool_per_event_loop_is_reused():
    from jobqueue.backend.connection import get_redis

    assert get_redis() is get_redis()
    await jobqueue.enqueue_product_embedding("pooled")
    pool = get_redis().connection_pool
    await asyncio.gather(*(jobqueue.enqueue_product_embedding(f"c{i}") for i in range(20)))
    assert get_redis().connection_pool is pool


def test_redact_url_keeps_everything_but_the_password():
    assert redact_url("redis://:pw@h:1/2") == "redis://***@h:1/2"
    assert redact_url("rediss://user:pw@h/0") == "rediss://user:***@h/0"
    assert redact_url("redis://h:6379") == "redis://h:6379"
    assert redact_url("unix:///tmp/r.sock?db=1") == "unix:///tmp/r.sock?db=1"


def test_importing_jobqueue_and_a_settings_class_touches_no_redis():
    # With Redis unreachable, imports must still be instant: nothing connects at import time.
    code = (
        "import jobqueue, jobqueue.backend.connection as c, tests.support.workers as w;"
        "assert not c._clients; print(w.EmbeddingTestSettings.queue_name)"
    )
    env = {"REDIS_URL": f"redis://127.0.0.1:{free_port()}/0", "PYTHONPATH": str(ROOT), "PATH": ""}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, timeout=30, check=True)
    assert out.stdout.strip() == b"jq:product-embedding:cron"


async def test_a_redis_that_never_answers_times_out_with_a_clear_error(monkeypatch):
    writers = []

    async def swallow(reader, writer):
        writers.append(writer)
        await reader.read(-1)  # accept and read, never answer

    server = await asyncio.start_server(swallow, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    monkeypatch.setenv("REDIS_URL", f"redis://127.0.0.1:{port}/0")
    monkeypatch.setenv("JOBQUEUE_REDIS_TIMEOUT", "1")
    get_settings.cache_clear()
    await jobqueue.close_queues()
    try:
        started = time.monotonic()
        with pytest.raises(RedisUnavailableError, match="no answer within 1s"):
            await jobqueue.enqueue_product_embedding("p1")
        assert time.monotonic() - started < 3
        assert await jobqueue.check_queues_health() is False
    finally:
        await jobqueue.close_queues()
        for writer in writers:
            writer.close()
        server.close()
        await server.wait_closed()
        get_settings.cache_clear()
