"""A worker process's /metrics: duration histogram and outcome counters with the right labels and
values, jobs running, heartbeat; the port scheme; a busy port costs the metrics, not the worker."""

import asyncio
import json
import time
from pathlib import Path

import httpx
import pytest

import jobqueue
from jobqueue import ConfigurationError
from jobqueue import product_embedding_queue as embeddings
from jobqueue.metrics import metrics_port
from tests.support.scrape import samples, value
from tests.support.waiting import WorkerProcess, free_port
from tests.support.workers import behaviour_key, counts

SETTINGS = "tests.support.workers.EmbeddingTestSettings"
QUEUE = "product-embedding"


async def scrape(port: int) -> dict:
    async with httpx.AsyncClient() as client:
        return samples((await client.get(f"http://127.0.0.1:{port}/metrics", timeout=5)).text)


async def test_worker_metrics_count_each_outcome_with_durations(redis_client):
    port = free_port()
    await redis_client.set(behaviour_key("broken"), json.dumps({"permanent": True}))
    await redis_client.set(behaviour_key("flaky"), json.dumps({"fail": 2}))
    await redis_client.set(behaviour_key("doomed"), json.dumps({"fail": 5}))
    ids = ["ok-1", "ok-2", "ok-3", "broken", "flaky", "doomed"]
    await jobqueue.enqueue_product_embeddings(ids)

    with WorkerProcess(SETTINGS, JOBQUEUE_PRODUCT_EMBEDDING_METRICS_PORT=str(port)) as worker:

        async def finished():
            c = await embeddings.get_job_counts()
            return c["completed"] + c["failed"] == len(ids)

        await worker.wait_for(finished, timeout=30, what="every job to finish")
        assert await embeddings.get_job_counts() == counts(completed=4, failed=2)
        # The outcome is counted right after the run; the page may be read a moment before.
        await worker.wait_for(
            lambda: _counted(port, 4 + 2 + 2 + 2), timeout=10, what="every run to be counted on /metrics"
        )
        page = await scrape(port)

    # ok-1..3 and flaky's last run completed; broken failed at once, doomed after 3 attempts;
    # flaky was retried twice and doomed twice.
    expected = {"completed": 4, "failed": 2, "retried": 4}
    for outcome, n in expected.items():
        assert value(page, "jobqueue_jobs_total", queue=QUEUE, outcome=outcome) == n, outcome
        assert value(page, "jobqueue_job_duration_seconds_count", queue=QUEUE, outcome=outcome) == n, outcome
        assert value(page, "jobqueue_job_duration_seconds_bucket", queue=QUEUE, outcome=outcome, le="+Inf") == n
        assert 0 < value(page, "jobqueue_job_duration_seconds_sum", queue=QUEUE, outcome=outcome) < n * 5
    assert value(page, "jobqueue_jobs_running", queue=QUEUE) == 0
    heartbeat = value(page, "jobqueue_worker_last_heartbeat_timestamp_seconds", queue=QUEUE)
    assert time.time() - 10 < heartbeat <= time.time()


async def _counted(port: int, runs: int) -> bool:
    page = await scrape(port)
    return sum(v for (name, _), v in page.items() if name == "jobqueue_jobs_total") == runs


async def test_a_busy_metrics_port_is_one_log_line_and_the_worker_runs_on(redis_client):
    port = free_port()
    env = {"JOBQUEUE_PRODUCT_EMBEDDING_METRICS_PORT": str(port)}
    with WorkerProcess(SETTINGS, **env) as first:
        await first.wait_for(lambda: _serves(port), timeout=20, what="the first worker's /metrics")
        with WorkerProcess(SETTINGS, **env) as second:
            await second.wait_for(lambda: _logged(second, "metrics port"), timeout=20, what="the busy-port warning")
            first.stop()
            handle = await jobqueue.enqueue_product_embedding("after")
            assert (await handle.result(timeout=20)).product_id == "after"
            warnings = [line for line in second.output().splitlines() if "metrics port" in line]
            assert len(warnings) == 1 and str(port) in warnings[0]


async def _serves(port: int) -> bool:
    try:
        return "jobqueue_jobs_running" in str(await scrape(port))
    except httpx.TransportError:
        return False


async def _logged(worker: WorkerProcess, text: str) -> bool:
    return text in worker.output()


def test_metrics_ports_are_off_by_default_offset_per_queue_and_overridable():
    assert metrics_port(QUEUE, {}) is None
    env = {"JOBQUEUE_METRICS_PORT": "9100"}
    assert [metrics_port(q, env) for q in jobqueue.QUEUE_NAMES.values()] == [9100, 9101, 9102, 9103, 9104]
    env["JOBQUEUE_REMINDER_DISPATCH_METRICS_PORT"] = "9200"
    assert metrics_port("reminder-dispatch", env) == 9200
    assert metrics_port(QUEUE, env) == 9100


def test_a_bad_metrics_port_is_a_configuration_error_naming_the_variable():
    with pytest.raises(ConfigurationError, match="JOBQUEUE_METRICS_PORT must be a port number, got 'ninety'"):
        metrics_port(QUEUE, {"JOBQUEUE_METRICS_PORT": "ninety"})
    with pytest.raises(ConfigurationError, match="JOBQUEUE_PRODUCT_EMBEDDING_METRICS_PORT"):
        metrics_port(QUEUE, {"JOBQUEUE_PRODUCT_EMBEDDING_METRICS_PORT": "70000"})


async def test_worker_metrics_listen_on_loopback_by_default(redis_client):
    port = free_port()
    with WorkerProcess(SETTINGS, JOBQUEUE_PRODUCT_EMBEDDING_METRICS_PORT=str(port)) as worker:
        await worker.wait_for(lambda: asyncio.to_thread(_listening, port), timeout=30, what="metrics to listen")
        assert _listening(port) == ["127.0.0.1"]
        assert f"metrics on http://127.0.0.1:{port}/metrics" in worker.output()


def _listening(port: int) -> list[str]:
    """The IPv4 addresses a socket listens on at ``port`` (Linux's /proc/net/tcp)."""
    addresses = []
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        address, hex_port = local.split(":")
        if state == "0A" and int(hex_port, 16) == port:
            addresses.append(".".join(str(int(address[i : i + 2], 16)) for i in (6, 4, 2, 0)))
    return addresses
