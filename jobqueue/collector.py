"""Queue-wide Prometheus metrics, read from Redis at scrape time (one scrape target for every queue).

The dashboard app serves ``render_queue_metrics()`` at ``/metrics``. Each scrape builds a fresh
registry from exact counts, so nothing is cached between scrapes and nothing runs in between.
"""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Gauge, generate_latest

from jobqueue._overview import redis_used_memory
from jobqueue.errors import RedisUnavailableError
from jobqueue.queues import QUEUES

__all__ = ["CONTENT_TYPE_LATEST", "render_queue_metrics"]


async def render_queue_metrics() -> bytes:
    """Prometheus text: depth per queue and state, paused flags, live workers, Redis memory.

    When Redis cannot be reached only ``jobqueue_redis_up 0`` is exported (never an error page),
    so an alert can fire on it.
    """
    registry = CollectorRegistry()
    up = Gauge("jobqueue_redis_up", "1 when Redis answered this scrape.", registry=registry)
    depth = Gauge("jobqueue_queue_jobs", "Jobs in each state (exact counts).", ["queue", "state"], registry=registry)
    paused = Gauge("jobqueue_queue_paused", "1 while the queue is paused.", ["queue"], registry=registry)
    workers = Gauge("jobqueue_workers_alive", "Workers with a live heartbeat.", ["queue"], registry=registry)
    running = Gauge("jobqueue_queue_jobs_running", "Jobs running, as the workers report.", ["queue"], registry=registry)
    memory = Gauge("jobqueue_redis_used_memory_bytes", "Redis used_memory.", registry=registry)
    try:
        for queue in QUEUES.values():
            for state, count in (await queue.get_job_counts()).items():
                depth.labels(queue.name, state).set(count)
            paused.labels(queue.name).set(int(await queue.is_paused()))
            alive = await queue.get_workers()
            workers.labels(queue.name).set(len(alive))
            running.labels(queue.name).set(sum(w["running"] for w in alive))
        memory.set(await redis_used_memory())
    except RedisUnavailableError:
        registry = CollectorRegistry()
        Gauge("jobqueue_redis_up", "1 when Redis answered this scrape.", registry=registry).set(0)
        return generate_latest(registry)
    up.set(1)
    return generate_latest(registry)
