"""Sentinel URLs: parsed and checked before anything is written, redacted in every message, and
followed end to end (enqueue, an arq worker process, result waits, the CLI, the dashboard) against
a real primary, replica and sentinel, through a switch of primary."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

import jobqueue
from jobqueue import ConfigurationError, RedisUnavailableError
from jobqueue import product_embedding_queue as embeddings
from jobqueue.backend._redis_settings import SentinelRedisSettings, redis_settings_from_url, wait_for_redis
from jobqueue.backend._sentinel import parse
from jobqueue.collector import render_queue_metrics
from jobqueue.dashboard import create_app
from jobqueue.settings import get_settings, redact_url
from tests.support.sentinel import SERVICE, SentinelGroup
from tests.support.waiting import ROOT, WorkerProcess, free_port, wait_for
from workers.dev.devredis import start_dev_redis

SETTINGS = "tests.support.workers.EmbeddingTestSettings"


def test_a_sentinel_url_names_sentinels_service_database_and_credentials():
    target = parse("redis+sentinel://app:s3cret@h1:26380,h2,[::1]:26381/orders/3?sentinel_password=sp")
    assert target.sentinels == [("h1", 26380), ("h2", 26379), ("::1", 26381)]
    assert (target.service, target.db, target.username, target.password) == ("orders", 3, "app", "s3cret")
    assert (target.sentinel_password, target.tls) == ("sp", False)
    assert "s3cret" not in repr(target) and "sp'" not in repr(target)
    tls = parse("rediss+sentinel://h1:26379/orders?ssl_ca_certs=/etc/ca.pem")
    assert tls.tls and tls.connection_kwargs()["ssl_ca_certs"] == "/etc/ca.pem"
    assert tls.sentinel_kwargs(4.0)["ssl"] is True


def test_redact_url_hides_the_password_and_the_sentinel_password():
    url = "redis+sentinel://app:s3cret@h1:26379,h2:26379/orders/0?sentinel_password=sp"
    assert redact_url(url) == "redis+sentinel://app:***@h1:26379,h2:26379/orders/0?sentinel_password=***"
    assert redact_url("redis+sentinel://:s3cret@h1/orders") == "redis+sentinel://***@h1/orders"


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("redis+sentinel://:s3cret@h1:26379", "names the service"),
        ("redis+sentinel://:s3cret@h1:port/orders", "port is a number"),
        ("redis+sentinel://:s3cret@h1,,h2/orders", "one of them is empty"),
        ("redis+sentinel://:s3cret@h1/orders/first", "database in a Sentinel URL is a number"),
        ("redis+sentinel://:s3cret@h1/orders?ssl_ca_certs=/ca.pem", "only apply to rediss+sentinel"),
        ("redis+sentinel://:s3cret@h1/orders?sentinel_pass=x", "not sentinel_pass"),
        ("sentinel://:s3cret@h1/orders", "is not a Redis URL"),
    ],
)
async def test_a_bad_url_is_one_clear_line_before_anything_is_written(monkeypatch, url, says):
    monkeypatch.setenv("REDIS_URL", url)
    get_settings.cache_clear()
    with pytest.raises(ConfigurationError) as info:
        await jobqueue.enqueue_product_embedding("p1")
    message = str(info.value)
    assert message.startswith("REDIS_URL: ") and says in message and "s3cret" not in message
    assert "\n" not in message


@pytest.mark.parametrize("command", [("stats",), ("dev",)])
def test_the_command_line_says_a_bad_url_in_one_line_without_the_password(command, tmp_path):
    done = _cli(*command, env={"REDIS_URL": "redis+sentinel://:s3cret@h1:26379"}, cwd=tmp_path)
    assert done.returncode == 1 and done.stderr.count("\n") == 1, done.stderr
    assert "names the service" in done.stderr and "s3cret" not in done.stderr
    assert list(tmp_path.iterdir()) == []  # jobqueue dev started nothing


def test_a_worker_gets_sentinel_settings_that_print_no_password():
    settings = redis_settings_from_url("redis+sentinel://:s3cret@h1:1,h2:2/orders/2", 3.0)
    assert isinstance(settings, SentinelRedisSettings)
    assert (settings.sentinel, settings.sentinel_master, settings.host, settings.database) == (
        True,
        "orders",
        [("h1", 1), ("h2", 2)],
        2,
    )
    assert "s3cret" not in repr(settings)


@pytest.fixture(scope="module")
def group(tmp_path_factory):
    """A primary, one replica and one sentinel, for the module."""
    group = SentinelGroup(tmp_path_factory.mktemp("sentinel"), replicas=1, sentinels=1).start()
    yield group
    group.stop()


@pytest.fixture
def sentinel_url(group, monkeypatch):
    url = group.url()
    group.primary_admin().flushdb()
    monkeypatch.setenv("REDIS_URL", url)
    get_settings.cache_clear()
    return url


async def test_enqueue_worker_result_cli_dashboard_and_collector_all_go_through_the_sentinel(group, sentinel_url):
    handles = [await jobqueue.enqueue_product_embedding(f"s{i}") for i in range(3)]
    assert await jobqueue.check_queues_health() is True
    with WorkerProcess(SETTINGS, REDIS_URL=sentinel_url) as worker:
        result = await worker.wait_for(lambda: handles[0].result(timeout=10), timeout=30, what="the first result")
        await worker.wait_for(lambda: _completed_at_least(3), timeout=30, what="three jobs completed")
    assert result.product_id == "s0"
    stats = await asyncio.to_thread(_cli, "stats", "--json", env={"REDIS_URL": sentinel_url})
    assert stats.returncode == 0, stats.stderr
    by_queue = {q["name"]: q for q in json.loads(stats.stdout)}
    assert by_queue["product-embedding"]["counts"]["completed"] == 3
    transport = httpx.ASGITransport(app=create_app(token="t"))
    async with httpx.AsyncClient(transport=transport, base_url="http://dash.test") as client:
        body = (await client.get("/api/queues", headers={"Authorization": "Bearer t"})).json()
    assert body["queues"][0]["counts"]["completed"] == 3
    metrics = (await render_queue_metrics()).decode()  # the collector, as the dashboard serves it
    assert "jobqueue_redis_up 1.0" in metrics
    assert 'jobqueue_queue_jobs{queue="product-embedding",state="completed"} 3.0' in metrics
    # Everything went to the primary the sentinel names: its own keys say so.
    assert group.primary_admin().zcard(embeddings.keys.completed) == 3


async def test_a_queue_of_its_own_can_live_behind_a_sentinel(group, sentinel_url, redis_url, monkeypatch):
    monkeypatch.setenv("REDIS_URL", redis_url)  # the other queues stay on the test Redis
    monkeypatch.setenv("JOBQUEUE_REMINDER_DISPATCH_REDIS_URL", sentinel_url)
    get_settings.cache_clear()
    due = dt.datetime.now(dt.UTC)
    handle = await jobqueue.enqueue_reminder_dispatch("s1", "u1", "PUSH", {"title": "t", "body": "b"}, due)
    await jobqueue.enqueue_product_embedding("elsewhere")
    assert handle.created and await handle.status() == "waiting"
    assert group.primary_admin().zcard(jobqueue.reminder_dispatch_queue.keys.queue) == 1
    assert group.primary_admin().zcard(embeddings.keys.queue) == 0
    assert (await jobqueue.reminder_dispatch_queue.get_job_counts())["waiting"] == 1
    assert await jobqueue.check_queues_health() is True


async def test_callers_and_a_running_worker_follow_a_switch_of_primary(group, sentinel_url):
    before = group.primary_port()
    with WorkerProcess(SETTINGS, REDIS_URL=sentinel_url) as worker:
        first = await jobqueue.enqueue_product_embedding("before")
        await worker.wait_for(lambda: _status_is(first, "completed"), timeout=30, what="a job before the switch")
        group.sentinels[0].admin().execute_command("SENTINEL", "FAILOVER", SERVICE)
        await wait_for(lambda: _true(group.primary_port() not in (None, before)), timeout=30, what="a new primary")
        refused: list[str] = []

        async def enqueue_after():
            try:
                return await jobqueue.enqueue_product_embedding("after")
            except RedisUnavailableError as exc:  # the switch: a clear error, never a hang or a raw one
                refused.append(str(exc))
                return None

        after = await wait_for(enqueue_after, timeout=20, what="an enqueue on the new primary")
        await worker.wait_for(lambda: _status_is(after, "completed"), timeout=30, what="the worker on the new primary")
        assert worker.proc.poll() is None, worker.output()[-3000:]
    assert group.primary_port() != before
    assert all("127.0.0.1" in message for message in refused)


async def test_the_password_goes_to_the_servers_and_sentinel_password_to_the_sentinels(tmp_path, monkeypatch):
    group = SentinelGroup(tmp_path, replicas=0, sentinels=1, password="srv-pw", sentinel_password="sen-pw")
    group.start()
    try:
        url = group.url()
        wait_for_redis(url, 2.0, 0)  # a worker's start-up probe gets through both
        monkeypatch.setenv("REDIS_URL", url)
        get_settings.cache_clear()
        assert (await jobqueue.enqueue_product_embedding("auth")).created
        assert group.primary_admin().exists(embeddings.keys.arq_job("product-embedding:auth"))
        for wrong in (url.replace("sen-pw", "nope"), url.split("?")[0], url.replace("srv-pw", "nope")):
            await jobqueue.close_queues()
            monkeypatch.setenv("REDIS_URL", wrong)
            get_settings.cache_clear()
            with pytest.raises(RedisUnavailableError) as info:
                await jobqueue.enqueue_product_embedding("refused")
            assert "pw" not in str(info.value) and "nope" not in str(info.value)
    finally:
        await jobqueue.close_queues()
        group.stop()


def test_jobqueue_dev_uses_a_sentinel_group_that_answers_and_refuses_one_that_does_not(group, tmp_path):
    dev = start_dev_redis(group.url(), tmp_path)
    assert dev.process is None and "a server that was already running" in dev.description
    dead = f"redis+sentinel://:s3cret@127.0.0.1:{free_port()}/{SERVICE}"
    with pytest.raises(ConfigurationError, match="only be started for a redis:// URL") as info:
        start_dev_redis(dead, tmp_path)
    assert "s3cret" not in str(info.value) and list(tmp_path.iterdir()) == []


def _cli(*args: str, env: dict[str, str], cwd: Path = ROOT) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), **env}
    command = [sys.executable, "-m", "jobqueue.cli", *args]
    return subprocess.run(command, capture_output=True, text=True, env=full_env, cwd=cwd, timeout=60)


async def _completed_at_least(n: int) -> bool:
    return (await embeddings.get_job_counts())["completed"] >= n


async def _status_is(handle, status: str) -> bool:
    return await handle.status() == status


async def _true(value: object) -> object:
    return value
