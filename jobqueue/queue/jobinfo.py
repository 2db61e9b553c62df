"""Reading a job's state and snapshot from Redis in one pipelined round."""

from __future__ import annotations

from typing import Any

from jobqueue.backend._json import loads
from jobqueue.backend._keys import QueueKeys
from jobqueue.queue.job import JobInfo, JobSource, JobState, ms_to_datetime


def redis_ms(reply: Any) -> int:
    """Milliseconds from the answer of Redis' ``TIME``."""
    seconds, micros = reply
    return int(seconds) * 1000 + int(micros) // 1000


def state_commands(pipe: Any, keys: QueueKeys, job_id: str) -> None:
    """Queue the six reads ``state_from`` needs (Redis' own clock among them)."""
    pipe.hexists(keys.active, job_id)
    pipe.zscore(keys.queue, job_id)
    pipe.exists(keys.paused)
    pipe.zscore(keys.completed, job_id)
    pipe.zscore(keys.failed, job_id)
    pipe.time()


def state_from(replies: list[Any]) -> JobState:
    active, score, paused, completed, failed, now = replies[:6]
    if active:
        return "active"
    if score is not None:
        if score > redis_ms(now):
            return "delayed"
        return "paused" if paused else "waiting"
    if completed is not None:
        return "completed"
    if failed is not None:
        return "failed"
    return "unknown"


def info_commands(pipe: Any, keys: QueueKeys, job_id: str) -> None:
    state_commands(pipe, keys, job_id)
    pipe.get(keys.arq_job(job_id))
    pipe.get(keys.done(job_id))
    pipe.hgetall(keys.info(job_id))
    pipe.hget(keys.active, job_id)
    pipe.get(keys.progress(job_id))


def _priority_from_score(score: float | None) -> int | None:
    if score is None:
        return None
    p = round((score % 1) * 16)
    return p if 1 <= p <= 10 else None


def record_info(
    queue: JobSource, job_id: str, state: JobState, record: dict[str, Any], progress: Any = None
) -> JobInfo:
    """The snapshot of a finished job, from the record FINISH stored (or was given)."""
    return JobInfo(
        job_id=job_id,
        queue_name=queue.name,
        state=state,
        function=record.get("function", queue.function),
        payload=record.get("payload", {}),
        priority=record.get("priority"),
        attempts_made=record.get("attempts", 0),
        enqueued_at=ms_to_datetime(record.get("enqueued_at")),
        due_at=ms_to_datetime(record.get("due_at")),
        started_at=ms_to_datetime(record.get("started_at")),
        finished_at=ms_to_datetime(record.get("finished_at")),
        error=record.get("error"),
        error_type=record.get("error_type"),
        result=record.get("result"),
        traceback=record.get("traceback"),
        progress=progress,
    )


def _due_ms(info: dict[bytes, bytes], job: dict[str, Any]) -> int | None:
    """When a job that is no longer delayed fell due: after a retry's backoff or a promotion (its
    info's ``due``), else its enqueue's delay or schedule (arq's ``d``); None when due at once."""
    due = _int(info[b"due"]) if b"due" in info else job.get("d")
    enqueued = job.get("et")
    if not isinstance(due, int) or due <= 0 or (isinstance(enqueued, int) and due <= enqueued):
        return None
    return due


def _int(raw: bytes) -> int | None:
    try:
        return int(raw)
    except ValueError:  # written by hand: shown as no due time, never a failed read
        return None


def _progress(raw: bytes | None) -> Any:
    return None if raw is None else loads(raw)


def build_info(queue: JobSource, job_id: str, replies: list[Any]) -> JobInfo | None:
    state = state_from(replies)
    score = replies[1]
    raw_job, raw_done, info, active_value, raw_progress = replies[6:11]
    if raw_done is not None and state in ("completed", "failed"):
        return record_info(queue, job_id, state, loads(raw_done), _progress(raw_progress))
    if raw_job is None:
        return None
    try:
        job = loads(raw_job)
        if not isinstance(job, dict) or not isinstance(job.get("a"), list):
            raise ValueError("not arq's job layout")
    except ValueError:  # a hostile or broken value: shown as what it is, never run
        job = {"f": queue.function, "a": [{}, None], "et": None}
    started = None
    if active_value is not None:
        # owner: "<worker id>|<token>|<start ms>|<score>"; the worker id itself holds no "|"
        started = ms_to_datetime(int(active_value.decode().split("|")[2]))
    # A delayed job is scored at its due time (ms) + priority / 16: the whole part is the due time.
    due = int(score) if state == "delayed" else _due_ms(info, job)
    # Attempts made before the current run (a hand-back or a paused claim is not an attempt).
    attempts = int(info.get(b"attempts", 0)) - (1 if state == "active" else 0)
    return JobInfo(
        job_id=job_id,
        queue_name=queue.name,
        state=state,
        function=job.get("f", queue.function),
        # arq's own jobs (cron runs) carry no payload or priority argument.
        payload=job["a"][0] if job["a"] else {},
        priority=job["a"][1] if len(job["a"]) > 1 else _priority_from_score(score),
        attempts_made=max(attempts, 0),
        enqueued_at=ms_to_datetime(job.get("et")),
        due_at=ms_to_datetime(due),
        started_at=started,
        error=info[b"error"].decode() if b"error" in info else None,
        progress=_progress(raw_progress),
    )
