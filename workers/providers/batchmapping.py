"""The batch lane, mapping back: an ended batch's answers written to its jobs' items, and each
way a batch ends handled (see ``workers.providers.batchrunner`` for the pass this is part of).

An answer is written to an item only if the item still holds the request that was sent in that
submission (same fingerprint and submission id): a job that asked for other content meanwhile is
left alone, and the jobs that no longer exist (cancelled or removed while their batch ran) lose
their answers.
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any

from jobqueue.coreapi.queues import get_queue
from jobqueue.coreapi.results import LLMUsage
from jobqueue.spend import priced, record_usage

if TYPE_CHECKING:
    from jobqueue.batches import LaneKeys
    from workers.providers.batchlane import BatchLane, BatchLaneSettings

logger = logging.getLogger("workers.batchlane")

# Reads and writes of many items go in pipelines of this many commands.
CHUNK = 1000


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class MapBack:
    """The map-back half of ``workers.providers.batchrunner.LaneRunner``."""

    lane: BatchLane
    redis: Any
    keys: LaneKeys
    settings: BatchLaneSettings
    client: Any
    _set_if_current: Any

    async def now_ms(self) -> int:
        seconds, micros = await self.redis.time()
        return int(seconds) * 1000 + int(micros) // 1000

    async def map_back(self, sid: str, batch: Any) -> None:
        """Write each answer of ended ``batch`` to its job's item, handle its ending, wake the jobs."""
        members = {_text(k): _text(v) for k, v in (await self.redis.hgetall(self.keys.members(sid))).items()}
        await self._drop_gone(members)
        answered: set[str] = set()
        tokens = [0, 0]
        requests = 0
        model = ""
        wake: list[str] = []
        for file_id in (batch.output_file_id, batch.error_file_id):
            if not file_id:
                continue
            content = await self.client.files.content(file_id)
            updates: list[tuple[str, list[Any]]] = []
            for raw in content.content.splitlines():
                if not raw.strip():
                    continue
                row = json.loads(raw)
                job_id = row.get("custom_id")
                if job_id not in members:
                    continue
                response, error = row.get("response"), row.get("error")
                if error and error.get("code") in ("batch_expired", "batch_cancelled"):
                    continue  # unanswered: the ending decides
                answered.add(job_id)
                if response and response.get("status_code") == 200:
                    body = response.get("body") or {}
                    usage = body.get("usage") or {}
                    tokens[0] += int(usage.get("prompt_tokens") or 0)
                    tokens[1] += int(usage.get("completion_tokens") or 0)
                    requests += 1
                    model = model or str(body.get("model") or "")
                    updates.append((job_id, ["state", "done", "response", json.dumps(body)]))
                else:
                    status = int(response.get("status_code") or 0) if response else 0
                    message = _error_message(response, error)
                    updates.append((job_id, ["state", "failed", "status", status, "error", message]))
            wake += await self._apply(sid, members, updates)
        unanswered = [j for j in members if j not in answered]
        ending = await self._end_unanswered(sid, batch, members, unanswered)
        wake += ending.pop("wake")
        now = await self.now_ms()
        sub_key = self.keys.submission(sid)
        usage = LLMUsage(
            model=model or self.lane.provider.embedding_model,
            lane="batch",
            requests=requests,
            input_tokens=tokens[0],
            output_tokens=tokens[1],
        )
        cost = priced(usage).cost_usd
        pipe = self.redis.pipeline(transaction=True)
        pipe.hset(
            sub_key,
            mapping={
                "status": batch.status,
                "ending": batch.status,
                "ended_at": now,
                "input_tokens": tokens[0],
                "output_tokens": tokens[1],
                "cost_usd": f"{cost:.8f}",
                **ending,
            },
        )
        pipe.expire(sub_key, int(self.settings.keep_ended))
        pipe.delete(self.keys.members(sid))
        pipe.zrem(self.keys.open, sid)
        pipe.zadd(self.keys.ended, {sid: now})
        pipe.zremrangebyscore(self.keys.ended, "-inf", now - int(self.settings.keep_ended * 1000))
        for start in range(0, len(wake), CHUNK):
            pipe.zadd(self.keys.wake, dict.fromkeys(wake[start : start + CHUNK], now))
        await pipe.execute()
        if requests:  # the counters and the per-hour/day figures, as the sync lane's calls count
            await record_usage(self.redis, self.lane.queue, usage)
        logger.info(
            "%s: batch %s ended %s: %d answered, %d unanswered",
            self.lane.queue,
            batch.id,
            batch.status,
            len(answered),
            len(unanswered),
        )

    async def _drop_gone(self, members: dict[str, str]) -> None:
        """Forget the requests of jobs that no longer exist (cancelled or removed while their batch
        ran): their answers are not kept. Removes them from ``members``."""
        ids = list(members)
        arq_job = get_queue(self.lane.queue).keys.arq_job
        for start in range(0, len(ids), CHUNK):
            chunk = ids[start : start + CHUNK]
            pipe = self.redis.pipeline(transaction=False)
            for job_id in chunk:
                pipe.exists(arq_job(job_id))
            gone = [job_id for job_id, exists in zip(chunk, await pipe.execute(), strict=True) if not exists]
            if gone:
                await self.redis.delete(*(self.keys.item(job_id) for job_id in gone))
                for job_id in gone:
                    del members[job_id]

    async def _apply(self, sid: str, members: dict[str, str], updates: list[tuple[str, list[Any]]]) -> list[str]:
        """Write ``updates`` to the items still holding the request sent in ``sid``; their job ids."""
        applied: list[str] = []
        for start in range(0, len(updates), CHUNK):
            chunk = updates[start : start + CHUNK]
            pipe = self.redis.pipeline(transaction=False)
            for job_id, fields in chunk:
                await self._set_if_current(
                    keys=[self.keys.item(job_id)], args=[members[job_id], sid, *fields], client=pipe
                )
            for (job_id, _), done in zip(chunk, await pipe.execute(), strict=True):
                if done:
                    applied.append(job_id)
        return applied

    async def _end_unanswered(
        self, sid: str, batch: Any, members: dict[str, str], unanswered: list[str]
    ) -> dict[str, Any]:
        """Handle the requests ``batch`` ended without answering, by how it ended."""
        if not unanswered:
            return {"wake": [], "resubmitted": 0, "sent_sync": 0}
        if batch.status == "expired":
            now = await self.now_ms()
            pipe = self.redis.pipeline(transaction=False)
            for job_id in unanswered:
                pipe.hget(self.keys.item(job_id), "deadline")
            deadlines = await pipe.execute()
            late = [j for j, d in zip(unanswered, deadlines, strict=True) if d is not None and int(d) <= now]
            again = [j for j, d in zip(unanswered, deadlines, strict=True) if d is not None and int(d) > now]
            await self._apply(sid, members, [(j, ["state", "sync"]) for j in late])
            requeued = await self._apply(sid, members, [(j, ["state", "pending", "sid", ""]) for j in again])
            if requeued:
                # Resubmitted at once: they have waited a whole window already.
                await self.redis.zadd(
                    self.keys.pending, dict.fromkeys(requeued, now - int(self.settings.gather_max * 1000))
                )
            return {"wake": late, "resubmitted": len(requeued), "sent_sync": len(late)}
        if batch.status == "cancelled":
            fields = [
                "state",
                "failed",
                "cancelled",
                1,
                "error",
                f"batch {batch.id} was cancelled before this request ran",
            ]
        else:
            errors = "; ".join(e.message or "" for e in (batch.errors.data or [])) if batch.errors else ""
            fields = [
                "state",
                "failed",
                "status",
                0,
                "error",
                f"batch {batch.id} ended {batch.status} without an answer {errors}".strip(),
            ]
        woken = await self._apply(sid, members, [(j, fields) for j in unanswered])
        return {"wake": woken, "resubmitted": 0, "sent_sync": 0}


def _error_message(response: dict[str, Any] | None, error: dict[str, Any] | None) -> str:
    if response and isinstance(response.get("body"), dict):
        detail = response["body"].get("error") or {}
        if detail.get("message"):
            return str(detail["message"])
    if error:
        return f"{error.get('code') or 'error'}: {error.get('message') or ''}"
    return "the batch gave no answer"
