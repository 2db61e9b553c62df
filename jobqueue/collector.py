"""Queue-wide Prometheus metrics, read from Redis at scrape time (one scrape target for every queue).

The dashboard app serves ``render_queue_metrics()`` at ``/metrics``. Each scrape builds a fresh
registry from exact counts, so nothing is cached between scrapes and nothing runs in between.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Gauge, generate_latest

from jobqueue.backend.connection import get_redis, redis_errors
from jobqueue.coreapi.queues import QUEUES
from jobqueue.errors import RedisUnavailableError
from jobqueue.queue.queue import Queue
from jobqueue.settings import get_settings, redact_url

__all__ = ["CONTENT_TYPE_LATEST", "render_queue_metrics"]


async def render_queue_metrics() -> bytes:
    """Prometheus text: depth per queue and state, paused flags, live workers, Redis memory.

    Each Redis the queues use (``REDIS_URL`` and each ``JOBQUEUE_<QUEUE>_REDIS_URL``) is read on its
    own: a server that cannot be reached leaves out its queues' figures, sets ``jobqueue_redis_up``
    to 0 and its queues' ``jobqueue_queue_redis_up`` to 0. When none answers only
    ``jobqueue_redis_up 0`` is exported (never an error page), so an alert can fire on it.
    """
    registry = CollectorRegistry()
    up = Gauge("jobqueue_redis_up", "1 when every Redis the queues use answered this scrape.", registry=registry)
    queue_up = Gauge("jobqueue_queue_redis_up", "1 when the queue's Redis answered.", ["queue"], registry=registry)
    depth = Gauge("jobqueue_queue_jobs", "Jobs in each state (exact counts).", ["queue", "state"], registry=registry)
    paused = Gauge("jobqueue_queue_paused", "1 while the queue is paused.", ["queue"], registry=registry)
    workers = Gauge("jobqueue_workers_alive", "Workers with a live heartbeat.", ["queue"], registry=registry)
    running = Gauge("jobqueue_queue_jobs_running", "Jobs running, as the workers report.", ["queue"], registry=registry)
    memory = Gauge("jobqueue_redis_used_memory_bytes", "Redis used_memory, summed over its servers.", registry=registry)
    server_memory = Gauge(
        "jobqueue_redis_server_used_memory_bytes", "used_memory of each Redis (password-free URL).", ["server"],
        registry=registry,
    )  # fmt: skip
    answered = total = 0
    servers = get_settings().redis_servers()
    for url, names in servers.items():
        try:
            figures = [await _queue_figures(QUEUES[name]) for name in names]
            async with redis_errors(queue=names[0]):
                used = int((await get_redis(names[0]).info("memory"))["used_memory"])
        except RedisUnavailableError:
            for name in names:
                queue_up.labels(name).set(0)
            continue
        answered += 1
        total += used
        server_memory.labels(redact_url(url)).set(used)
        for name, (counts, is_paused, alive) in zip(names, figures, strict=True):
            queue_up.labels(name).set(1)
            for state, count in counts.items():
                depth.labels(name, state).set(count)
            paused.labels(name).set(int(is_paused))
            workers.labels(name).set(len(alive))
            running.labels(name).set(sum(w["running"] for w in alive))
    if not answered:
        registry = CollectorRegistry()
        Gauge("jobqueue_redis_up", "1 when every Redis the queues use answered this scrape.", registry=registry).set(0)
        return generate_latest(registry)
    memory.set(total)
    up.set(int(answered == len(servers)))
    return generate_latest(registry)


async def _queue_figures(queue: Queue) -> tuple[dict[str, int], bool, list[dict[str, Any]]]:
    return await queue.get_job_counts(), await queue.is_paused(), await queue.get_workers()
