"""The batch lane's records in Redis, and how to read them (``jobqueue batches``, the dashboard).

Batch-lane jobs (``lane="batch"``) hand their provider request to their queue's batch lane
(``workers.providers.batchlane``), which gathers them into Batch API submissions. Everything it knows lives
under ``jq:<queue>:batch:``, so any worker of the queue carries on where another stopped:

- ``item:<job id>``   a hash: the job's request (``fp``, its fingerprint; ``endpoint``, ``body``),
                      its ``state`` (``pending`` → ``submitted`` → ``done`` | ``failed`` | ``sync``),
                      the submission it is in (``sid``), ``queued``/``deadline`` (ms) and, once
                      answered, ``response`` or ``error``/``status``
- ``pending``         a zset of job ids whose request waits for the next submission, by queued time
- ``open``            a zset of submission ids not yet ended, by creation time
- ``ended``           a zset of ended submission ids (kept ``JOBQUEUE_BATCH_KEEP_ENDED`` seconds)
- ``sub:<sid>``       a hash: one submission (``batch_id``, ``status``, ``requests``, counts, tokens, cost)
- ``members:<sid>``   a hash: job id → the fingerprint of the request it put in that submission
- ``wake``            a zset of job ids to promote (their answer is in), retried until they are delayed
- ``lock``            which worker runs the lane's next pass (submit, poll, map back)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from jobqueue.backend.connection import get_redis, redis_errors
from jobqueue.constants import KEY_PREFIX
from jobqueue.coreapi.queues import get_queue

# Ended submissions listed at most.
ENDED_SHOWN = 20


@dataclass(frozen=True, slots=True)
class LaneKeys:
    """Keys of one queue's batch lane."""

    queue: str

    @property
    def base(self) -> str:
        return f"{KEY_PREFIX}:{self.queue}:batch:"

    def item(self, job_id: str) -> str:
        return self.base + "item:" + job_id

    @property
    def pending(self) -> str:
        return self.base + "pending"

    @property
    def open(self) -> str:
        return self.base + "open"

    @property
    def ended(self) -> str:
        return self.base + "ended"

    @property
    def wake(self) -> str:
        return self.base + "wake"

    @property
    def lock(self) -> str:
        return self.base + "lock"

    def submission(self, sid: str) -> str:
        return self.base + "sub:" + sid

    def members(self, sid: str) -> str:
        return self.base + "members:" + sid


@dataclass(frozen=True, slots=True)
class BatchSubmission:
    """One Batch API submission of a queue, as the lane last saw it."""

    sid: str
    batch_id: str | None
    status: str  # "submitting", then the provider's: validating, in_progress, ..., completed, expired, cancelled
    endpoint: str
    requests: int
    completed: int
    failed: int
    created_at: int  # ms
    ended_at: int | None
    ending: str | None  # how its jobs were handled: completed, expired, cancelled, failed
    resubmitted: int
    sent_sync: int
    input_tokens: int
    output_tokens: int
    cost_usd: float

    def as_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


@dataclass(frozen=True, slots=True)
class BatchLaneView:
    """A queue's batch lane: requests waiting for a submission, open and recently ended submissions."""

    queue: str
    pending: int
    open: list[BatchSubmission]
    ended: list[BatchSubmission]

    def as_dict(self) -> dict[str, Any]:
        return {
            "queue": self.queue,
            "pending": self.pending,
            "open": [s.as_dict() for s in self.open],
            "ended": [s.as_dict() for s in self.ended],
        }


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def submission_from(sid: str, raw: dict[Any, Any]) -> BatchSubmission:
    """A ``BatchSubmission`` from its hash as Redis returns it."""
    h = {_text(k): _text(v) for k, v in raw.items()}

    def num(name: str) -> int:
        return int(float(h.get(name) or 0))

    return BatchSubmission(
        sid=sid,
        batch_id=h.get("batch_id") or None,
        status=h.get("status", "unknown"),
        endpoint=h.get("endpoint", ""),
        requests=num("requests"),
        completed=num("completed"),
        failed=num("failed"),
        created_at=num("created_at"),
        ended_at=num("ended_at") or None,
        ending=h.get("ending") or None,
        resubmitted=num("resubmitted"),
        sent_sync=num("sent_sync"),
        input_tokens=num("input_tokens"),
        output_tokens=num("output_tokens"),
        cost_usd=float(h.get("cost_usd") or 0.0),
    )


async def get_batches(queue: str, *, redis: Any = None) -> BatchLaneView:
    """The batch lane of ``queue`` (a queue name or object): pending requests, open submissions
    (oldest first) and the last ``ENDED_SHOWN`` ended ones (newest first)."""
    name = get_queue(queue).name
    keys = LaneKeys(name)
    async with redis_errors(queue=name):
        client = redis if redis is not None else get_redis(name)
        pipe = client.pipeline(transaction=False)
        pipe.zcard(keys.pending)
        pipe.zrange(keys.open, 0, -1)
        pipe.zrevrange(keys.ended, 0, ENDED_SHOWN - 1)
        pending, open_ids, ended_ids = await pipe.execute()
        sids = [_text(s) for s in [*open_ids, *ended_ids]]
        pipe = client.pipeline(transaction=False)
        for sid in sids:
            pipe.hgetall(keys.submission(sid))
        rows = await pipe.execute() if sids else []
    found = {sid: submission_from(sid, row) for sid, row in zip(sids, rows, strict=True) if row}
    return BatchLaneView(
        queue=name,
        pending=int(pending),
        open=[found[_text(s)] for s in open_ids if _text(s) in found],
        ended=[found[_text(s)] for s in ended_ids if _text(s) in found],
    )
