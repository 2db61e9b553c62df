"""What jobqueue relies on in arq 0.28, checked once when a worker is built, and the two pieces
that sit between arq and our job function: the job deserializer and arq's log lines.

Relied on: arq's key prefixes; its job layout (``f``, ``a``, ``k``, ``t``, ``et``); that a job
function raising ``Retry()`` without a delay makes arq only delete its claim (``in-progress``) and
leave the job's keys and score alone; the ``Worker`` arguments the settings class sets. A mismatch
stops the worker with a message naming the arq version jobqueue needs.
"""

from __future__ import annotations

import inspect
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from redis.asyncio.client import Pipeline
from redis.exceptions import RedisError, WatchError

from jobqueue._json import loads
from jobqueue._pool import tune_pool
from jobqueue.constants import ARQ_IN_PROGRESS_PREFIX, ARQ_JOB_PREFIX, ARQ_RETRY_PREFIX
from jobqueue.errors import ConfigurationError

ARQ_VERSION_NEEDED = "0.28"
# The payload our deserializer hands the job function in place of a job it could not read.
INVALID_JOB_KEY = "__jobqueue_invalid_job__"

_verified = False

# What arq 0.28 does in a claim and in its first read of a claimed job, line by line.
_ARQ_CALLS_ANSWERED = {
    "__init__": ["self.in_progress_timeout_s = (max_timeout or 0) + 10"],
    "start_jobs": [
        "await pipe.watch(in_progress_key)",
        "ongoing_exists = await pipe.exists(in_progress_key)",
        "score = await pipe.zscore(self.queue_name, job_id)",
        "if ongoing_exists or not score or score > timestamp_ms():",
        "pipe.psetex(in_progress_key, int(self.in_progress_timeout_s * 1000), b'1')",
    ],
    "run_job": [
        "pipe.get(job_key_prefix + job_id)",
        "pipe.incr(retry_key_prefix + job_id)",
        "pipe.expire(retry_key_prefix + job_id, 88400)",
    ],
    "finish_job": ["tr.delete(*delete_keys)"],
}


def verify_arq(worker_arguments: Iterable[str]) -> None:
    """Raise ``ConfigurationError`` when the installed arq is not the one jobqueue was built on."""
    global _verified
    if _verified:
        return
    import arq.constants
    import arq.jobs
    import arq.version
    import arq.worker

    problems = []
    if not arq.version.VERSION.startswith(ARQ_VERSION_NEEDED + "."):
        problems.append(f"arq {arq.version.VERSION} is installed")
    for name, ours in (
        ("job_key_prefix", ARQ_JOB_PREFIX),
        ("in_progress_key_prefix", ARQ_IN_PROGRESS_PREFIX),
        ("retry_key_prefix", ARQ_RETRY_PREFIX),
    ):
        if getattr(arq.constants, name, None) != ours:
            problems.append(f"arq's {name} is not {ours!r}")
    try:
        layout = arq.jobs.deserialize_job_raw(b'{"t":null,"f":"f","a":[{},1],"k":{},"et":5}', deserializer=loads)
        if layout != ("f", [{}, 1], {}, None, 5):
            problems.append("arq reads the job layout differently")
    except Exception as exc:  # any failure here means the layout changed
        problems.append(f"arq cannot read jobqueue's job layout ({exc})")
    # ClaimSafePipeline answers these calls of arq's from one script (claim.lua), which decides
    # and writes as they do.
    for method, lines in _ARQ_CALLS_ANSWERED.items():
        source = inspect.getsource(getattr(arq.worker.Worker, method))
        if not all(line in source for line in lines):
            problems.append(f"arq's Worker.{method} no longer makes the calls jobqueue answers for it")
    if arq.worker.Retry().defer_score is not None:
        problems.append("arq's Retry() without a delay moves the job")
    finish = inspect.signature(arq.worker.Worker.finish_job).parameters
    if list(finish)[1:] != [
        "job_id",
        "finish",
        "result_data",
        "result_timeout_s",
        "keep_result_forever",
        "incr_score",
        "keep_in_progress",
    ]:
        problems.append("arq's finish_job changed")
    accepted = set(inspect.signature(arq.worker.Worker).parameters)
    unknown = sorted(set(worker_arguments) - accepted)
    if unknown:
        problems.append(f"arq's Worker does not take {', '.join(unknown)}")
    if problems:
        raise ConfigurationError(
            f"jobqueue needs arq {ARQ_VERSION_NEEDED}.x (pip install 'arq=={ARQ_VERSION_NEEDED}.*'): "
            + "; ".join(problems)
        )
    _verified = True


def _invalid(function: str, reason: str) -> dict[str, Any]:
    return {"t": None, "f": function, "a": [{INVALID_JOB_KEY: reason}, 0], "k": {}, "et": 0}


def job_deserializer(function: str, others: Iterable[str]) -> Callable[[bytes], dict[str, Any]]:
    """arq's job deserializer for one queue's workers: JSON only, and never raising.

    A job key holding something else (garbage, a pickle, JSON of the wrong shape, an unknown
    function) reaches our job function as an invalid job, which fails it with a clear error and
    a record, instead of arq dropping it without one. No code in Redis is ever run.
    """
    known = {function, *others}

    def deserialize(raw: bytes) -> dict[str, Any]:
        try:
            job = loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            return _invalid(function, f"the job stored in Redis is not JSON ({type(exc).__name__})")
        if not (
            isinstance(job, dict)
            and isinstance(job.get("f"), str)
            and isinstance(job.get("a"), list)
            and isinstance(job.get("k"), dict)
            and isinstance(job.get("et"), int)
            and "t" in job
        ):
            return _invalid(function, "the job stored in Redis does not have arq's job layout")
        if job["f"] not in known:
            return _invalid(function, f"the job names a function this worker does not have: {job['f']!r}")
        if job["f"] == function and (len(job["a"]) != 2 or not isinstance(job["a"][0], dict) or job["k"]):
            return _invalid(function, "the job's arguments are not (payload, priority)")
        return job

    return deserialize


class ArqLogFilter(logging.Filter):
    """Drops arq's start and "retrying" lines for our job function: every run ends with ``Retry()``
    (our scripts settle the job), and arq measures "delayed" from priority-band scores far in the
    past. jobqueue logs one line per run instead (``jobqueue.worker``)."""

    def __init__(self, function: str) -> None:
        super().__init__()
        self._suffix = f":{function}"

    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.msg if isinstance(record.msg, str) else ""
        if "→" not in msg and "↻" not in msg:
            return True
        return not any(isinstance(a, str) and a.endswith(self._suffix) for a in record.args or ())


def follow_arq_logging() -> None:
    """Print jobqueue's worker lines where arq prints its own: ``arq``'s CLI configures handlers for
    its ``arq`` logger only, so without this jobqueue's per-run INFO lines would go nowhere. A host
    that configured logging itself (a root handler, or handlers on ``jobqueue``) is left alone."""
    ours, arq_logger = logging.getLogger("jobqueue"), logging.getLogger("arq")
    if ours.handlers or logging.getLogger().handlers or not arq_logger.handlers:
        return
    for handler in arq_logger.handlers:
        ours.addHandler(handler)
    ours.setLevel(arq_logger.level or logging.INFO)
    ours.propagate = False


def install_log_filter(function: str) -> None:
    log = logging.getLogger("arq.worker")
    if not any(isinstance(f, ArqLogFilter) and f._suffix == f":{function}" for f in log.filters):
        log.addFilter(ArqLogFilter(function))


class ArqClaims:
    """What a worker's pool pipelines know of arq's claims: the worker's queue (its zset), how to
    claim a job in one script (``claim``, set by the worker: ``WorkerState.claim``) and the TTL
    arq gives its in-progress key, and what came back from the claims made: arq's first read of
    each job, each run's START, and which claims FINISH has already released."""

    __slots__ = ("claim", "claimed", "fetched", "in_progress_ms", "queue", "released", "started")

    def __init__(self, queue: str | None, in_progress_ms: int = 0) -> None:
        self.queue = queue
        self.in_progress_ms = in_progress_ms
        # (job id, arq's clock in ms, in-progress TTL in ms) -> (run token, CLAIM's reply)
        self.claim: Callable[[str, int, int], Awaitable[tuple[str, list[Any]]]] | None = None
        self.claimed: set[str] = set()  # claimed by CLAIM, until arq's MULTI/PSETEX/EXEC
        self.released: set[str] = set()
        self.fetched: dict[str, list[Any]] = {}  # job id -> the replies to arq's first read of it
        self.started: dict[str, tuple[str, Any]] = {}  # job id -> (run token, START's reply)

    def take_started(self, job_id: str) -> tuple[str, Any] | None:
        """The token and START reply of the run the claim of ``job_id`` started, once."""
        return self.started.pop(job_id, None)

    def _forget(self, job_id: str) -> None:
        self.claimed.discard(job_id)
        self.fetched.pop(job_id, None)
        self.started.pop(job_id, None)
        if len(self.fetched) > FETCHED_LIMIT or len(self.started) > FETCHED_LIMIT:
            self.fetched.clear()  # never taken: arq stopped before running them
            self.started.clear()


class ClaimSafePipeline(Pipeline):
    """arq's claim (``Worker.start_jobs``) WATCHes the job's in-progress key and reads two values
    before MULTI, outside its ``try``: Redis going away, busy or out of memory there (redis-py then
    raises ``WatchError``) would end the worker. Here such an error reads as "claimed elsewhere",
    so arq skips the job this poll. A claim made without the WATCH would still be safe: START
    lets one run own a job.

    In a worker (``claims.claim`` set), arq's claim and its bookkeeping of a run cost one round
    trip instead of six: at the claim's WATCH, one script (``claim.lua``) makes the claim as arq
    would decide it, reads the job as arq does next, and STARTs our run; arq's EXISTS and ZSCORE,
    its MULTI/PSETEX/EXEC and its first read of the job are answered from the reply, and the
    wrapper takes START's. FINISH deletes the in-progress key itself, so arq's own delete of it
    afterwards (a transaction of that one DEL) is answered without sending it. Anything that is
    not arq 0.28's exact call goes to Redis as it is."""

    _broken = False
    claims: ArqClaims | None = None
    _prefetched: dict[tuple[Any, ...], Any] | None = None

    def execute_command(self, *args: Any, **options: Any) -> Any:
        if self._broken and not self.explicit_transaction:
            return self.immediate_execute_command(*args, **options)  # answers 1: "claimed elsewhere"
        return super().execute_command(*args, **options)

    async def immediate_execute_command(self, *args: Any, **options: Any) -> Any:
        if self._broken:
            return 1
        prefetched = self._prefetched
        if prefetched is not None and args in prefetched:
            return prefetched.pop(args)
        try:
            if self._is_claim_watch(args):
                return await self._claim(args[1])
            return await super().immediate_execute_command(*args, **options)
        except (WatchError, RedisError, OSError) as exc:
            self._broken = True
            logging.getLogger("jobqueue.worker").warning("a claim was skipped: Redis failed while watching (%s)", exc)
            return 1

    def _is_claim_watch(self, args: tuple[Any, ...]) -> bool:
        return (
            self.claims is not None
            and self.claims.claim is not None
            and not self.watching
            and _job_id_in(args, "WATCH", 2, ARQ_IN_PROGRESS_PREFIX) is not None
        )

    async def _claim(self, in_progress_key: str) -> bool:
        claims = self.claims
        assert claims is not None and claims.claim is not None
        job_id = in_progress_key[len(ARQ_IN_PROGRESS_PREFIX) :]
        claims._forget(job_id)
        token, reply = await claims.claim(job_id, int(time.time() * 1000), claims.in_progress_ms)
        # arq's next two reads go to immediate_execute_command while it "watches": answered here.
        self.watching = True
        score = float(reply[1]) if reply[1] is not None else None
        self._prefetched = {("EXISTS", in_progress_key): int(reply[0]), ("ZSCORE", claims.queue, job_id): score}
        if len(reply) > 2:
            claims.claimed.add(job_id)
            claims.fetched[job_id] = [reply[2], int(reply[3]), True]
            if reply[4] is not None:  # not one of arq's cron jobs
                claims.started[job_id] = (token, reply[4])
        return True

    async def execute(self, raise_on_error: bool = True) -> list[Any]:
        claims = self.claims
        if claims is None:
            return await super().execute(raise_on_error)
        released = self._released_claim()
        if released is not None:
            claims.released.discard(released)
            await self.reset()
            return [1]
        fetch = self._job_fetch()
        if fetch is not None:
            await self.reset()
            return claims.fetched.pop(fetch)
        claimed = self._claimed_job()
        if claimed is None or claims.claim is None:
            return await super().execute(raise_on_error)
        _, in_progress_key, ttl_ms, _ = self.command_stack[0][0]
        await self.reset()
        if claimed not in claims.claimed:
            # CLAIM did not claim it (arq's clock moved past the job's due time since): skip it
            # as arq skips a claim lost to another worker; the next poll claims it.
            claims._forget(claimed)
            raise WatchError("the job was not claimed by the claim script")
        claims.claimed.discard(claimed)
        if ttl_ms != claims.in_progress_ms:  # arq's in-progress TTL, learnt if it differs
            claims.in_progress_ms = ttl_ms
            await self._pexpire(in_progress_key, ttl_ms)
        return [True]

    async def _pexpire(self, key: str, ttl_ms: int) -> None:
        conn = await self.connection_pool.get_connection()
        try:
            await conn.send_command("PEXPIRE", key, ttl_ms)
            await conn.read_response()
        finally:
            await self.connection_pool.release(conn)

    def _claimed_job(self) -> str | None:
        """The job id when this is arq's claim: MULTI, PSETEX of its in-progress key, EXEC."""
        if not (self.claims and self.explicit_transaction and len(self.command_stack) == 1):
            return None
        return _job_id_in(self.command_stack[0][0], "PSETEX", 4, ARQ_IN_PROGRESS_PREFIX)

    def _job_fetch(self) -> str | None:
        """The job id when this is arq's first read of a job whose replies the claim fetched."""
        if self.claims is None or not self.claims.fetched or len(self.command_stack) != 3:
            return None
        job_id = _job_id_in(self.command_stack[0][0], "GET", 2, ARQ_JOB_PREFIX)
        if job_id not in self.claims.fetched or [cmd for cmd, _ in self.command_stack] != _job_fetch_commands(job_id):
            return None
        return job_id

    def _released_claim(self) -> str | None:
        """The job id when this is arq's drop of a claim FINISH has released (one DEL)."""
        if self.claims is None or not self.claims.released or len(self.command_stack) != 1:
            return None
        job_id = _job_id_in(self.command_stack[0][0], "DEL", 2, ARQ_IN_PROGRESS_PREFIX)
        return job_id if job_id in self.claims.released else None

    async def reset(self) -> None:
        self._prefetched = None
        if self.connection is None:
            self.watching = False  # the claim's "watch" was CLAIM's: nothing to UNWATCH
        await super().reset()


# Claims whose job arq has not read (or run) yet, at most: arq runs each at once; a stopping
# worker may not.
FETCHED_LIMIT = 10_000


def _job_id_in(args: tuple[Any, ...], name: str, parts: int, prefix: str) -> str | None:
    """The job id when ``args`` is the command ``name`` of ``parts`` parts on a ``prefix`` key."""
    if len(args) != parts or args[0] != name or not isinstance(args[1], str) or not args[1].startswith(prefix):
        return None
    return args[1][len(prefix) :]


def _job_fetch_commands(job_id: str) -> list[tuple[Any, ...]]:
    """arq's first read of a job it claimed (``Worker.run_job``, abort off), as redis-py stacks it."""
    retry = ARQ_RETRY_PREFIX + job_id
    return [("GET", ARQ_JOB_PREFIX + job_id), ("INCRBY", retry, 1), ("EXPIRE", retry, 88400)]


def make_claims_safe(pool: Any, queue: str | None = None, in_progress_ms: int = 0) -> ArqClaims:
    """Give arq's pool (``ctx["redis"]``) pipelines that cannot end the worker in a claim, and
    that save arq's round trips once the worker sets ``claims.claim``."""
    claims = ArqClaims(queue, in_progress_ms)

    def pipeline(transaction: bool = True, shard_hint: str | None = None) -> Pipeline:
        pipe = ClaimSafePipeline(pool.connection_pool, pool.response_callbacks, transaction, shard_hint)
        pipe.claims = claims
        return pipe

    pool.pipeline = pipeline
    tune_pool(pool.connection_pool)
    return claims
