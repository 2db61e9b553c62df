"""Replicated acknowledgement of enqueues: ``JOBQUEUE_ENQUEUE_REPLICAS=N``.

Redis replicates asynchronously: a primary acknowledges a write before any replica has it, and a
failover to a replica that had not got it yet loses the write. With ``N`` > 0 an enqueue sends,
in the same pipeline as its script and so on the same connection, ``WAIT N timeout``: Redis
answers once ``N`` replicas have acknowledged every write of that connection so far, or when the
timeout passes with how many did. Fewer than ``N`` raises ``NotReplicatedError`` (the jobs are on
the primary; a retry is safe). ``WAIT`` does not make Redis strongly consistent (a write that
timed out stays on the primary, and Sentinel may still promote a replica that lacks it), but a
job whose enqueue returned is on ``N`` replicas besides the primary. A replicated enqueue sends
its own pipeline (scripts, then ``WAIT``) on its queue's Redis: it does not join an auto-pipelined
batch (``jobqueue.backend._autopipeline``), and an enqueue across queues waits per queue.

``WAIT`` counts only the writes of its own connection. A deduplicated enqueue (``created=False``)
writes nothing, so its ``WAIT`` alone would confirm nothing about the job it found, such as the
one of an earlier enqueue whose ``WAIT`` timed out. Each replicated enqueue therefore also writes
a small key of its queue (with a TTL) just before ``WAIT``: the replication stream is one ordered
log, so replicas that have that write have every write before it, the job included.
"""

from __future__ import annotations

from typing import Any

from jobqueue.errors import NotReplicatedError
from jobqueue.settings import get_settings, redact_url

# The key each replicated enqueue writes before its WAIT (jq:<queue>:replicated), and its TTL.
FENCE_KEY = "replicated"
FENCE_TTL_MS = 60_000
# The commands a replicated enqueue adds after its script calls: the fence write and WAIT.
ADDED_REPLIES = 2


def wanted() -> int:
    """``JOBQUEUE_ENQUEUE_REPLICAS``: 0 for no wait (the default)."""
    return get_settings().enqueue_replicas


def extra_scale() -> float:
    """How much longer than ``JOBQUEUE_REDIS_TIMEOUT`` a replicated enqueue may take: its WAIT."""
    settings = get_settings()
    return settings.enqueue_replicas_timeout / settings.redis_timeout


def queue_wait(pipe: Any, base: str, replicas: int) -> None:
    """Add the fence write and ``WAIT replicas timeout`` to ``pipe``, after the enqueue scripts."""
    timeout_ms = max(1, round(get_settings().enqueue_replicas_timeout * 1000))  # WAIT 0 would block forever
    pipe.set(base + FENCE_KEY, b"", px=FENCE_TTL_MS)
    pipe.execute_command("WAIT", replicas, timeout_ms)


def check(replies: list[Any], replicas: int, handles: list[Any], queue: str) -> None:
    """Raise ``NotReplicatedError`` (naming ``queue``'s Redis) unless ``WAIT`` (the last of
    ``replies``) counted ``replicas``."""
    acknowledged = int(replies[-1])
    if acknowledged < replicas:
        settings = get_settings()
        url = redact_url(settings.queue_redis_url(queue))
        raise NotReplicatedError(url, replicas, acknowledged, settings.enqueue_replicas_timeout, handles)
