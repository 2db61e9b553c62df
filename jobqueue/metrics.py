"""Prometheus metrics of a worker process, served on ``/metrics`` when a port is configured.

Off by default. ``JOBQUEUE_METRICS_PORT=P`` turns it on for every worker: the worker of the queue
at index ``i`` of ``QUEUE_NAMES`` (product-embedding 0, product-enrichment 1, taste-profile-embedding
2, curated-collections 3, reminder-dispatch 4) listens on ``P + i``, so the five workers of one host
never clash. ``JOBQUEUE_<QUEUE>_METRICS_PORT`` (e.g. ``JOBQUEUE_PRODUCT_EMBEDDING_METRICS_PORT``)
sets one queue's port exactly; give each extra process of the same queue on a host its own.
A port already taken is logged once as a warning and the worker runs on without metrics.
``JOBQUEUE_METRICS_ADDR`` is the address to listen on: loopback (``127.0.0.1``) unless it says
otherwise, so a worker never exposes its metrics beyond the host by default; a container whose
metrics Prometheus scrapes from outside sets ``0.0.0.0`` (compose.yaml does).

The queue-wide figures (depth per state, Redis memory, workers alive) are read from Redis at scrape
time by ``jobqueue.collector``, served by the dashboard app at ``/metrics``.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sized

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from jobqueue._envnames import queue_prefix
from jobqueue.constants import DEFAULT_METRICS_ADDR, QUEUE_NAMES
from jobqueue.errors import ConfigurationError

logger = logging.getLogger("jobqueue.metrics")

# Seconds: from 10 ms (a cache hit) to 10 minutes (a day's collections).
DURATION_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)
# A run's outcome kind (jobqueue.worker._state.Outcome.kind) -> the ``outcome`` label; others are not counted.
OUTCOME_LABELS = {"completed": "completed", "failed": "failed", "retry": "retried"}


class WorkerMetrics:
    """The metrics one worker process exports (a registry of its own, so tests can build several)."""

    def __init__(self, registry: CollectorRegistry = REGISTRY) -> None:
        self.registry = registry
        self.duration = Histogram(
            "jobqueue_job_duration_seconds",
            "Time one run of a job took, by queue and outcome.",
            ["queue", "outcome"],
            buckets=DURATION_BUCKETS,
            registry=registry,
        )
        self.jobs = Counter(
            "jobqueue_jobs",
            "Runs ended, by queue and outcome (completed, failed, retried).",
            ["queue", "outcome"],
            registry=registry,
        )
        self.running = Gauge("jobqueue_jobs_running", "Jobs running in this process.", ["queue"], registry=registry)
        self.heartbeat = Gauge(
            "jobqueue_worker_last_heartbeat_timestamp_seconds",
            "Unix time of this worker's last heartbeat to Redis.",
            ["queue"],
            registry=registry,
        )

        # LLM provider calls (jobqueue.spend.record_usage); "lane" is sync or batch.
        spend_labels = ["queue", "model", "lane"]
        self.llm_requests = Counter(
            "jobqueue_llm_requests",
            "Provider requests, by queue, model and lane (a request shared by queues is split between them).",
            spend_labels,
            registry=registry,
        )
        self.llm_tokens = Counter(
            "jobqueue_llm_tokens",
            "Tokens the provider counted, by queue, model, lane and kind (input, output).",
            [*spend_labels, "kind"],
            registry=registry,
        )
        self.llm_cost = Counter(
            "jobqueue_llm_cost_usd",
            "Cost in USD from the price table (JOBQUEUE_LLM_PRICES), by queue, model and lane.",
            spend_labels,
            registry=registry,
        )
        self.llm_cache_hits = Counter(
            "jobqueue_llm_cache_hits",
            "Embeddings served from the content-hash cache, by queue and model.",
            ["queue", "model"],
            registry=registry,
        )
        self.llm_cache_misses = Counter(
            "jobqueue_llm_cache_misses",
            "Embeddings the content-hash cache did not hold (sent to the provider), by queue and model.",
            ["queue", "model"],
            registry=registry,
        )

    def observe(self, queue: str, kind: str, seconds: float) -> None:
        """Count one run that ended with outcome ``kind`` after ``seconds``."""
        outcome = OUTCOME_LABELS.get(kind)
        if outcome is None:  # a run handed back by a graceful stop is not an outcome
            return
        self.duration.labels(queue, outcome).observe(seconds)
        self.jobs.labels(queue, outcome).inc()

    def beat(self, queue: str) -> None:
        self.heartbeat.labels(queue).set(time.time())


_metrics: WorkerMetrics | None = None


def worker_metrics() -> WorkerMetrics:
    """This process's metrics, registered in prometheus-client's default registry on first use."""
    global _metrics
    if _metrics is None:
        _metrics = WorkerMetrics()
    return _metrics


def metrics_port(queue: str, environ: dict[str, str] | None = None) -> int | None:
    """The port the worker of ``queue`` serves ``/metrics`` on, or None when metrics are off."""
    env = os.environ if environ is None else environ
    own = queue_prefix(queue) + "METRICS_PORT"
    if env.get(own):
        return _port(own, env[own])
    base = env.get("JOBQUEUE_METRICS_PORT")
    if not base:
        return None
    names = list(QUEUE_NAMES.values())
    return _port("JOBQUEUE_METRICS_PORT", base) + (names.index(queue) if queue in names else 0)


def _port(variable: str, raw: str) -> int:
    try:
        port = int(raw)
    except ValueError:
        port = -1
    if not 0 < port < 65536 - len(QUEUE_NAMES):
        raise ConfigurationError(f"{variable} must be a port number, got {raw!r}")
    return port


def start_metrics_server(queue: str, running: Sized) -> int | None:
    """Serve the metrics of this worker process, the one of ``queue``, if a port is configured;
    ``running`` holds the runs it owns now (its size is the running gauge). Returns the port, or
    None."""
    port = metrics_port(queue)
    if port is None:
        return None
    addr = os.environ.get("JOBQUEUE_METRICS_ADDR") or DEFAULT_METRICS_ADDR
    worker_metrics().running.labels(queue).set_function(lambda: len(running))
    try:
        start_http_server(port, addr=addr)
    except OSError as exc:
        logger.warning(
            "%s: metrics port %s:%d unavailable (%s); this worker serves no /metrics", queue, addr, port, exc
        )
        return None
    logger.info("%s: metrics on http://%s:%d/metrics", queue, addr, port)
    return port
