"""The batch lane, runner side: gather pending requests into Batch API submissions, poll them, map
their answers back to the jobs and wake those jobs.

Every worker of a queue with a batch lane runs ``run_lane``; each pass is made by whichever worker
takes the lane's lock (``SET NX PX``), so passes never overlap and a worker that dies mid-pass
holds the lane for ``JOBQUEUE_BATCH_LOCK_TTL`` at most. A pass:

1. **recover**: a submission recorded ``submitting`` by a worker that died before it learnt the
   batch's id is looked up at the provider by its metadata (``jobqueue_submission``); found, it is
   adopted, else dropped (its requests are still ``pending`` and go into the next submission);
2. **submit**: when the pending requests are due (no new one for ``gather_quiet`` seconds, the oldest
   waiting ``gather_max``, or ``max_requests`` of them), up to ``max_requests`` and
   ``max_file_bytes`` go into one JSONL file (``custom_id`` = job id), uploaded with
   ``purpose="batch"``, and one batch is created (``completion_window="24h"``);
3. **poll** each open submission; once the batch has ended, **map back** its output and error files:
   each answer is written to its job's item (only if the item still holds the request that was
   sent), and then each ending is handled:

   - ``completed``: answered requests ``done``, those answered with an error ``failed`` (the job
     retries by its attempts and its request goes alone into a later submission);
   - ``expired``: answered ones as above; the unanswered are ``pending`` again (resubmitted) or,
     past their deadline (``JOBQUEUE_BATCH_SYNC_AFTER`` after first queued), ``sync``;
   - ``cancelled``: answered ones as above; the unanswered fail (``BatchLaneCancelledError``);
   - ``failed`` (the provider refused the file): every request ``failed``, retryable;

4. **wake** the jobs whose items changed: promoted from delayed to waiting, so they run now.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
from typing import TYPE_CHECKING, Any

import openai
from redis.exceptions import RedisError

from jobqueue.backend import _redis_errors, _scripts
from jobqueue.coreapi.queues import get_queue
from jobqueue.errors import PermanentJobError
from workers.providers.batchmapping import CHUNK, MapBack
from workers.providers.llm import map_openai_error

if TYPE_CHECKING:
    from workers.providers.batchlane import BatchLane

logger = logging.getLogger("workers.batchlane")

# Batches looked at when recovering a submission whose batch id was never recorded.
RECOVER_LIST_LIMIT = 100
ENDED_STATUSES = frozenset({"completed", "expired", "cancelled", "failed"})
# Written to an item only while it still holds the request that was sent (same fingerprint and,
# when given, same submission): a job that meanwhile asked for other content is left alone.
# KEYS[1] item   ARGV[1] fingerprint   ARGV[2] submission id ('' any)   ARGV[3..] field, value, ...
SET_IF_CURRENT = """
if redis.call('HGET', KEYS[1], 'fp') ~= ARGV[1] then return 0 end
if ARGV[2] ~= '' and redis.call('HGET', KEYS[1], 'sid') ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV, 3))
return 1
"""
# Marks a pending item submitted in submission ARGV[2]; KEYS[1] item, ARGV[1] fingerprint.
MARK_SUBMITTED = """
if redis.call('HGET', KEYS[1], 'fp') ~= ARGV[1] or redis.call('HGET', KEYS[1], 'state') ~= 'pending' then
  return 0
end
redis.call('HSET', KEYS[1], 'state', 'submitted', 'sid', ARGV[2])
return 1
"""
RELEASE_LOCK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


async def run_lane(lane: BatchLane) -> None:
    """Make a pass every ``poll_interval`` seconds until cancelled; errors are logged, never fatal."""
    runner = LaneRunner(lane)
    while True:
        try:
            await runner.run_pass()
        except (RedisError, *_redis_errors.TRANSIENT) as exc:
            logger.warning("%s: batch lane pass failed, will retry: %s", lane.queue, _redis_errors.describe(exc))
        except openai.OpenAIError as exc:
            logger.warning("%s: batch lane pass failed at the provider, will retry: %s", lane.queue, exc)
        except Exception:  # a bug of ours: logged loudly, and the lane keeps running in this worker
            logger.exception("%s: batch lane pass failed unexpectedly", lane.queue)
        await asyncio.sleep(lane.settings.poll_interval)


class LaneRunner(MapBack):
    """One pass of a queue's batch lane (see the module docstring)."""

    def __init__(self, lane: BatchLane) -> None:
        self.lane = lane
        self.redis = lane.redis
        self.keys = lane.keys
        self.settings = lane.settings
        self.client = lane.provider.client
        self._set_if_current = self.redis.register_script(SET_IF_CURRENT)
        self._mark_submitted = self.redis.register_script(MARK_SUBMITTED)
        self._release = self.redis.register_script(RELEASE_LOCK)

    async def run_pass(self) -> bool:
        """One pass, if this worker gets the lane's lock; returns whether it did."""
        token = secrets.token_hex(8)
        if not await self.redis.set(self.keys.lock, token, nx=True, px=int(self.settings.lock_ttl * 1000)):
            return False
        try:
            await self.recover()
            await self.submit_due()
            await self.poll_open()
            await self.wake()
        finally:
            await self._release(keys=[self.keys.lock], args=[token])
        return True

    # -- recover -------------------------------------------------------------------------------

    async def recover(self) -> None:
        now = await self.now_ms()
        for sid in [_text(s) for s in await self.redis.zrange(self.keys.open, 0, -1)]:
            sub = {_text(k): _text(v) for k, v in (await self.redis.hgetall(self.keys.submission(sid))).items()}
            if sub.get("batch_id") or now - int(sub.get("created_at") or 0) < self.settings.lock_ttl * 1000:
                continue
            batch = await self._find_batch(sid)
            if batch is None:
                logger.warning(
                    "%s: submission %s never reached the provider: its requests go again", self.lane.queue, sid
                )
                await self._unsend(sid, ["state", "pending", "sid", ""], requeue=True)
                continue
            logger.warning("%s: adopting batch %s of submission %s", self.lane.queue, batch.id, sid)
            await self.redis.hset(self.keys.submission(sid), mapping={"batch_id": batch.id, "status": batch.status})

    async def _find_batch(self, sid: str) -> Any:
        page = await self.client.batches.list(limit=RECOVER_LIST_LIMIT)
        for batch in page.data:
            if (batch.metadata or {}).get("jobqueue_submission") == sid:
                return batch
        return None

    # -- submit --------------------------------------------------------------------------------

    async def submit_due(self) -> None:
        """Submit the pending requests when they are due; at most one submission per pass."""
        s = self.settings
        count = await self.redis.zcard(self.keys.pending)
        if not count:
            return
        now = await self.now_ms()
        oldest = await self.redis.zrange(self.keys.pending, 0, 0, withscores=True)
        newest = await self.redis.zrange(self.keys.pending, -1, -1, withscores=True)
        quiet = now - newest[0][1] >= s.gather_quiet * 1000
        overdue = now - oldest[0][1] >= s.gather_max * 1000
        if not (quiet or overdue or count >= s.max_requests):
            return
        ids = [_text(j) for j in await self.redis.zrange(self.keys.pending, 0, s.max_requests - 1)]
        lines, included, dropped = await self._lines(ids)
        if dropped:
            await self.redis.zrem(self.keys.pending, *dropped)
        if lines:
            await self._submit(lines, included, now)

    async def _lines(self, ids: list[str]) -> tuple[list[bytes], dict[str, str], list[str]]:
        """The JSONL lines of the pending requests that still stand (their job exists), within the
        file's byte limit; the fingerprint of each one included; the ids to drop from pending."""
        lines: list[bytes] = []
        included: dict[str, str] = {}
        dropped: list[str] = []
        size = 0
        endpoint: str | None = None
        for start in range(0, len(ids), CHUNK):
            chunk = ids[start : start + CHUNK]
            pipe = self.redis.pipeline(transaction=False)
            for job_id in chunk:
                pipe.hgetall(self.keys.item(job_id))
                pipe.exists(get_queue(self.lane.queue).keys.arq_job(job_id))
            replies = await pipe.execute()
            for job_id, raw, exists in zip(chunk, replies[::2], replies[1::2], strict=True):
                item = {_text(k): _text(v) for k, v in raw.items()}
                if item.get("state") != "pending" or not exists:
                    dropped.append(job_id)  # answered meanwhile, or its job was cancelled or removed
                    if not exists:
                        await self.redis.delete(self.keys.item(job_id))
                    continue
                endpoint = endpoint or item["endpoint"]
                if item["endpoint"] != endpoint:
                    continue  # one endpoint per batch: the next submission takes it
                line = (
                    f'{{"custom_id":{json.dumps(job_id)},"method":"POST","url":{json.dumps(endpoint)},'
                    f'"body":{item["body"]}}}\n'
                ).encode()
                if size + len(line) > self.settings.max_file_bytes:
                    return lines, included, dropped
                size += len(line)
                lines.append(line)
                included[job_id] = item["fp"]
        return lines, included, dropped

    async def _submit(self, lines: list[bytes], included: dict[str, str], now: int) -> None:
        sid = secrets.token_hex(6)
        first = next(iter(included))
        endpoint = _text(await self.redis.hget(self.keys.item(first), "endpoint"))
        sub_key = self.keys.submission(sid)
        pipe = self.redis.pipeline(transaction=True)
        pipe.hset(
            sub_key,
            mapping={"status": "submitting", "endpoint": endpoint, "requests": len(lines), "created_at": now},
        )
        pipe.zadd(self.keys.open, {sid: now})
        await pipe.execute()
        members = list(included.items())
        for start in range(0, len(members), CHUNK):
            await self.redis.hset(self.keys.members(sid), mapping=dict(members[start : start + CHUNK]))
        # Marked before the upload: while the submission is in doubt, no later pass sends them again.
        await self._mark_members_submitted(sid)
        try:
            file = await self.client.files.create(
                file=(f"{self.lane.queue}-{sid}.jsonl", b"".join(lines)), purpose="batch"
            )
            await self.redis.hset(sub_key, "input_file_id", file.id)
            batch = await self.client.batches.create(
                input_file_id=file.id,
                endpoint=endpoint,  # type: ignore[arg-type]
                completion_window="24h",
                metadata={"jobqueue_queue": self.lane.queue, "jobqueue_submission": sid},
            )
        except openai.APIStatusError as exc:
            # The provider answered with an error: no batch was created. A refusal that retrying
            # cannot fix fails the requests; otherwise they stay pending for the next pass.
            logger.warning("%s: could not submit %d batch requests: %s", self.lane.queue, len(lines), exc)
            error = map_openai_error(exc)
            if isinstance(error, PermanentJobError):
                # Each request fails as its sync call would have (workers.providers.batchlane.item_error).
                await self._unsend(sid, ["state", "failed", "status", exc.status_code, "error", str(error)])
            else:
                await self._unsend(sid, ["state", "pending", "sid", ""], requeue=True)
            return
        except openai.OpenAIError as exc:
            # No answer (a timeout, a cut connection): the batch may exist. recover() looks for it by
            # its metadata after lock_ttl and adopts it, or sends its requests again.
            logger.warning("%s: submitting %d batch requests got no answer: %s", self.lane.queue, len(lines), exc)
            return
        await self.redis.hset(sub_key, mapping={"batch_id": batch.id, "status": batch.status})
        logger.info("%s: submitted %d requests as batch %s (%s)", self.lane.queue, len(lines), batch.id, sid)

    async def _unsend(self, sid: str, fields: list[Any], *, requeue: bool = False) -> None:
        """A submission that created no batch: write ``fields`` to the requests still in it, and put
        them back in pending (``requeue``) or wake their jobs; then forget the submission."""
        members = {_text(k): _text(v) for k, v in (await self.redis.hgetall(self.keys.members(sid))).items()}
        applied = await self._apply(sid, members, [(job_id, fields) for job_id in members])
        now = await self.now_ms()
        pipe = self.redis.pipeline(transaction=True)
        for start in range(0, len(applied), CHUNK):
            chunk = dict.fromkeys(applied[start : start + CHUNK], now)
            pipe.zadd(self.keys.pending if requeue else self.keys.wake, chunk)
        pipe.delete(self.keys.submission(sid), self.keys.members(sid))
        pipe.zrem(self.keys.open, sid)
        await pipe.execute()

    async def _mark_members_submitted(self, sid: str) -> None:
        """Mark the submission's requests submitted and take them out of pending. A job that asked
        for other content meanwhile stays pending (its new request goes into the next submission)."""
        members = {_text(k): _text(v) for k, v in (await self.redis.hgetall(self.keys.members(sid))).items()}
        items = list(members.items())
        for start in range(0, len(items), CHUNK):
            chunk = items[start : start + CHUNK]
            pipe = self.redis.pipeline(transaction=False)
            for job_id, fp in chunk:
                await self._mark_submitted(keys=[self.keys.item(job_id)], args=[fp, sid], client=pipe)
            marked = [job_id for (job_id, _), done in zip(chunk, await pipe.execute(), strict=True) if done]
            if marked:
                await self.redis.zrem(self.keys.pending, *marked)

    # -- poll (mapping back: workers.providers.batchmapping) --------------------------------------------

    async def poll_open(self) -> None:
        for sid in [_text(s) for s in await self.redis.zrange(self.keys.open, 0, -1)]:
            sub_key = self.keys.submission(sid)
            batch_id = await self.redis.hget(sub_key, "batch_id")
            if not batch_id:
                continue  # still submitting, or for recover()
            batch = await self.client.batches.retrieve(_text(batch_id))
            counts = batch.request_counts
            progress = {"status": batch.status}
            if counts is not None:
                progress |= {"completed": counts.completed, "failed": counts.failed}
            await self.redis.hset(sub_key, mapping=progress)
            if batch.status in ENDED_STATUSES:
                await self.map_back(sid, batch)

    # -- wake ----------------------------------------------------------------------------------

    async def wake(self) -> None:
        """Promote the jobs whose answer is in; a job still running (it parks in a moment) is tried
        again on the next pass, until ``recheck_after`` has passed (then its own recheck runs it)."""
        queue = get_queue(self.lane.queue)
        k = queue.keys
        now = await self.now_ms()
        entries = await self.redis.zrange(self.keys.wake, 0, -1, withscores=True)
        for start in range(0, len(entries), CHUNK):
            chunk = entries[start : start + CHUNK]
            pipe = self.redis.pipeline(transaction=False)
            for job_id, _ in chunk:
                _scripts.PROMOTE.queue_in(
                    pipe, [k.queue, k.active, k.seq], [_text(job_id), queue.default_priority, k.base]
                )
                pipe.hexists(k.active, _text(job_id))
            replies = await _scripts.run_pipeline(self.redis, pipe, _scripts.PROMOTE)
            # Done with: promoted (1), gone (0), or waiting already (-1, not running).
            done = [
                job_id
                for (job_id, since), code, running in zip(chunk, replies[::2], replies[1::2], strict=True)
                if code != -1 or not running or now - since > self.settings.recheck_after * 1000
            ]
            if done:
                await self.redis.zrem(self.keys.wake, *done)
