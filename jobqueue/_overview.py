"""What operators see of a queue: counts, pause, workers and the last hour, for the CLI and dashboard."""

from __future__ import annotations

import math
import time
from typing import Any

from jobqueue.backend._json import loads
from jobqueue.backend.connection import get_redis, redis_errors
from jobqueue.coreapi.queues import QUEUES
from jobqueue.errors import InvalidJobError
from jobqueue.queue.queue import Queue
from jobqueue.settings import get_settings, redact_url
from jobqueue.spend import spend_summary

# The finished records read to estimate run-time percentiles: the newest this many of the window
# (the page asks every few seconds; Prometheus' histogram has the exact figures).
DURATION_SAMPLE = 300
WINDOW_MINUTES = 60


def queue_for_job(job_id: str) -> Queue:
    """The queue a job id belongs to: ids start with their queue's name (``product-embedding:p1``)."""
    prefix = job_id.partition(":")[0]
    if prefix not in QUEUES:
        raise InvalidJobError(f"cannot tell the queue of job {job_id!r}: ids start with one of {', '.join(QUEUES)}")
    return QUEUES[prefix]


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (``q`` in 0..100) of ``values``; None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(math.ceil(q / 100 * len(ordered)), 1)
    return ordered[rank - 1]


async def recent_durations(queue: Queue, since_ms: int, limit: int = DURATION_SAMPLE) -> list[float]:
    """Run times in seconds of the newest completed jobs finished since ``since_ms``."""
    async with redis_errors(queue=queue.name):
        redis = get_redis(queue.name)
        ids = await redis.zrevrangebyscore(queue.keys.completed, "+inf", since_ms, start=0, num=limit)
        records = await redis.mget([queue.keys.done(i.decode()) for i in ids]) if ids else []
    out = []
    for raw in records:
        if raw is None:
            continue
        record = loads(raw)
        if record.get("started_at") and record.get("finished_at"):
            out.append((record["finished_at"] - record["started_at"]) / 1000)
    return out


async def queue_summary(queue: Queue, minutes: int = WINDOW_MINUTES) -> dict[str, Any]:
    """Counts, pause state, live workers, the last ``minutes`` of throughput of one queue, and its
    LLM spend (``llm``: requests, tokens and cost over the last hour and day, see ``jobqueue.spend``)."""
    counts = await queue.get_job_counts()
    paused = await queue.is_paused()
    workers = await queue.get_workers()
    history = await queue.get_metrics(minutes=minutes)
    durations = await recent_durations(queue, int(time.time() * 1000) - minutes * 60_000)
    completed, failed, retried = (sum(history[k]) for k in ("completed", "failed", "retried"))
    return {
        "name": queue.name,
        "counts": counts,
        "paused": paused,
        "workers": len(workers),
        "running": sum(w["running"] for w in workers),
        "window_minutes": minutes,
        "completed": completed,
        "failed": failed,
        "retried": retried,
        "throughput_per_minute": round(completed / minutes, 3),
        "failure_rate": round(failed / (completed + failed), 4) if completed + failed else 0.0,
        "duration_p50": percentile(durations, 50),
        "duration_p95": percentile(durations, 95),
        "duration_p99": percentile(durations, 99),
        "history": history,
        "llm": await spend_summary(queue.name),
    }


async def all_summaries(minutes: int = WINDOW_MINUTES) -> list[dict[str, Any]]:
    return [await queue_summary(q, minutes) for q in QUEUES.values()]


async def redis_servers() -> list[dict[str, Any]]:
    """Every Redis the queues use (``REDIS_URL`` and each ``JOBQUEUE_<QUEUE>_REDIS_URL``): its
    password-free ``url``, its ``queues`` and its ``used_memory`` in bytes."""
    out = []
    for url, queues in get_settings().redis_servers().items():
        async with redis_errors(queue=queues[0]):
            memory = int((await get_redis(queues[0]).info("memory"))["used_memory"])
        out.append({"url": redact_url(url), "queues": queues, "used_memory": memory})
    return out


async def redis_used_memory() -> int:
    """Redis ``used_memory`` in bytes, summed over every Redis the queues use."""
    return sum(server["used_memory"] for server in await redis_servers())
