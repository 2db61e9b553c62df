"""The batch lane, job side: a job's provider call becomes one line of a Batch API submission.

A batch-lane job runs its handler as on the sync lane (the same reads and idempotency checks) up to
its provider call. There, ``BatchLane.embed``/``complete_json`` looks up the job's request in Redis
(``jobqueue.batches``) by the job id and the request's fingerprint:

- none yet (or one for other content): the request is recorded ``pending`` and the run ends
  ``JobParked``: the job waits as a delayed job, no attempt spent, its worker slot free;
- ``pending``/``submitted``: still in the works: parked again;
- ``done``: the answer is returned, and the handler writes it exactly as the sync lane does (the
  same store write fences);
- ``failed``: the provider answered this request with an error: raised as the job's error, so the
  job retries by its attempts (its request goes alone into a later submission) or fails;
- ``sync``: the request expired unanswered after its deadline: the call is made on the sync lane.

The lane's runner (``workers.providers.batchrunner``), in every worker of the queue, gathers pending
requests into submissions, polls them, writes the answers to the items and promotes their jobs.
Parking lasts ``JOBQUEUE_BATCH_RECHECK_AFTER`` seconds at most: a job whose promotion was lost
runs again then and looks for itself.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Final, TypeVar

import pydantic
from openai.types import CreateEmbeddingResponse
from openai.types.chat import ChatCompletion
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from jobqueue._env import read_settings
from jobqueue._tasks import cancel_and_wait
from jobqueue.batches import LaneKeys
from jobqueue.errors import JobParked, PermanentJobError, RetryableJobError
from workers.providers.llm import InvalidInputError, OpenAIProvider

if TYPE_CHECKING:
    from redis.asyncio import Redis

logger = logging.getLogger("workers.batchlane")

ModelT = TypeVar("ModelT", bound=pydantic.BaseModel)
EMBEDDINGS: Final = "/v1/embeddings"
CHAT: Final = "/v1/chat/completions"
# OpenAI's limits on one batch input file, and the only completion window it offers.
OPENAI_BATCH_MAX_REQUESTS: Final = 50_000
OPENAI_BATCH_MAX_BYTES: Final = 200 * 1024 * 1024
COMPLETION_WINDOW: Final = "24h"
# The statuses the openai SDK retries (workers.providers.llm follows the same list).
_RETRYABLE_STATUSES: Final = frozenset({408, 409, 429})


class BatchLaneSettings(BaseSettings):
    """``JOBQUEUE_BATCH_*``: how the batch lane gathers, submits, polls and gives up."""

    model_config = SettingsConfigDict(env_prefix="JOBQUEUE_BATCH_", extra="ignore")

    # Each worker of the queue looks at the lane this often (submit what is due, poll open batches).
    poll_interval: float = Field(30.0, gt=0)
    # Submit once no request joined for this long (a bulk enqueue has finished parking) ...
    gather_quiet: float = Field(5.0, ge=0)
    # ... or once the oldest pending request has waited this long, or max_requests are pending.
    gather_max: float = Field(300.0, ge=0)
    max_requests: int = Field(OPENAI_BATCH_MAX_REQUESTS, ge=1, le=OPENAI_BATCH_MAX_REQUESTS)
    max_file_bytes: int = Field(OPENAI_BATCH_MAX_BYTES, ge=1024, le=OPENAI_BATCH_MAX_BYTES)
    # A parked job runs again after this long if nothing promoted it, and looks for its answer.
    recheck_after: float = Field(900.0, gt=0)
    # From a request's first queuing: once this has passed, a request that a batch left unanswered
    # (expired) goes on the sync lane instead of into another submission. Two 24 h windows.
    sync_after: float = Field(48 * 3600.0, ge=0)
    # Ended submissions' records are kept this long for the CLI and dashboard.
    keep_ended: float = Field(7 * 86400.0, gt=0)
    # A worker that died in a pass holds the lane's lock at most this long.
    lock_ttl: float = Field(120.0, gt=0)


def fingerprint(endpoint: str, body: dict[str, Any]) -> str:
    """The request's identity: an answer is used only for the very request that was sent."""
    text = endpoint + "\n" + json.dumps(body, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def item_error(status: int, message: str) -> RetryableJobError | PermanentJobError:
    """The job error for a request the provider answered with ``status`` inside a batch (0: none)."""
    detail = f"the Batch API answered this request with {status}: {message}" if status else message
    if status in _RETRYABLE_STATUSES or status >= 500 or status == 0:
        return RetryableJobError(detail)
    if status in (400, 422):
        return InvalidInputError(detail)
    return PermanentJobError(detail)


class BatchLaneCancelledError(PermanentJobError):
    """The submission holding this job's request was cancelled before the request was answered."""


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class BatchLane:
    """One queue's batch lane in one worker: the job-side calls, and the runner task."""

    def __init__(self, queue: str, redis: Redis, provider: OpenAIProvider, settings: BatchLaneSettings) -> None:
        self.queue = queue
        self.redis = redis
        self.provider = provider
        self.settings = settings
        self.keys = LaneKeys(queue)
        self.task: asyncio.Task[None] | None = None

    @classmethod
    def open(cls, queue: str, redis: Redis, provider: OpenAIProvider) -> BatchLane:
        return cls(queue, redis, provider, read_settings(BatchLaneSettings))

    # -- the job side ------------------------------------------------------------------------

    async def embed(self, job_id: str, text: str, *, sync: Callable[[str], Awaitable[list[float]]]) -> list[float]:
        """The vector of ``text`` from a batch (parking the job until there is one); ``sync``
        embeds it on the sync lane once the request's deadline has passed unanswered."""
        answer = await self.call(job_id, EMBEDDINGS, self.provider.embedding_body(text))
        if answer is None:
            return await sync(text)
        response = CreateEmbeddingResponse.model_validate(answer)
        if len(response.data) != 1:
            raise PermanentJobError(f"the Batch API returned {len(response.data)} vectors for one text")
        vector = list(response.data[0].embedding)
        problem = self.provider.vector_problem(vector)
        if problem is not None:
            raise PermanentJobError(problem)
        return vector

    async def complete_json(
        self,
        job_id: str,
        system: str,
        user: str,
        schema: type[ModelT],
        *,
        schema_name: str,
        sync: Callable[..., Awaitable[ModelT]],
    ) -> ModelT:
        """The model's answer parsed into ``schema``, from a batch (parking the job until there is
        one); ``sync`` (a provider's ``complete_json``) asks on the sync lane once the request's
        deadline has passed unanswered."""
        body = self.provider.chat_body(system, user, schema, schema_name=schema_name)
        answer = await self.call(job_id, CHAT, body)
        if answer is None:
            return await sync(system, user, schema, schema_name=schema_name)
        return self.provider.parse_completion(ChatCompletion.model_validate(answer), schema)

    async def call(self, job_id: str, endpoint: str, body: dict[str, Any]) -> dict[str, Any] | None:
        """The provider's answer (a response body) to this job's request, None to make it on the
        sync lane; raises ``JobParked`` while it is in the works, the job's error if it failed."""
        key = self.keys.item(job_id)
        fp = fingerprint(endpoint, body)
        item = {_text(k): _text(v) for k, v in (await self.redis.hgetall(key)).items()}
        if item.get("fp") == fp:
            state = item.get("state")
            if state == "done":
                await self.redis.delete(key)
                return json.loads(item["response"])
            if state == "failed":
                await self.redis.delete(key)
                if item.get("cancelled"):
                    raise BatchLaneCancelledError(item.get("error") or "the batch was cancelled")
                raise item_error(int(item.get("status") or 0), item.get("error") or "no answer")
            if state == "sync":
                await self.redis.delete(key)
                logger.info("%s: %s: its batch request passed its deadline unanswered: sync lane", self.queue, job_id)
                return None
            where = f"in batch submission {item['sid']}" if item.get("sid") else "waiting for a batch submission"
            raise JobParked(f"its request is {where}", recheck_after=self.settings.recheck_after)
        await self._queue_request(job_id, key, fp, endpoint, body, item)
        raise JobParked("its request waits for a batch submission", recheck_after=self.settings.recheck_after)

    async def _queue_request(
        self, job_id: str, key: str, fp: str, endpoint: str, body: dict[str, Any], old: dict[str, str]
    ) -> None:
        seconds, micros = await self.redis.time()
        now = int(seconds) * 1000 + int(micros) // 1000
        # A request for new content of the same job keeps the first one's deadline.
        queued = int(old.get("queued") or now)
        pipe = self.redis.pipeline(transaction=True)
        pipe.delete(key)
        pipe.hset(
            key,
            mapping={
                "fp": fp,
                "endpoint": endpoint,
                "body": json.dumps(body, separators=(",", ":")),
                "state": "pending",
                "queued": queued,
                "deadline": queued + int(self.settings.sync_after * 1000),
            },
        )
        pipe.expire(key, int(self.settings.sync_after + 2 * self.settings.keep_ended) + 86400)
        pipe.zadd(self.keys.pending, {job_id: now})
        await pipe.execute()

    # -- the runner ------------------------------------------------------------------------------

    def start(self) -> None:
        """Run the lane's passes (``workers.providers.batchrunner``) in the background of this worker."""
        from workers.providers.batchrunner import run_lane

        if self.task is None:
            self.task = asyncio.get_running_loop().create_task(run_lane(self), name=f"jobqueue-batch-lane-{self.queue}")

    async def aclose(self) -> None:
        """Stop the runner and close the client; safe to call twice. Nothing is lost: the lane's
        state is in Redis, and any other worker of the queue (or this one, restarted) carries on."""
        task, self.task = self.task, None
        await cancel_and_wait(task)
        await self.provider.aclose()
