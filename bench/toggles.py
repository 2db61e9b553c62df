"""jobqueue against itself: one setting on and off, in the same run.

- **100 enqueues in flight** (``JOBQUEUE_AUTO_PIPELINE``): ``asyncio.gather`` of 100 enqueue calls,
  round after round, with auto-pipelining off (what every enqueue did before it) and on, beside
  ``add_bulk`` of the same 100 jobs; the Redis connections each way opened (new client ids in
  ``CLIENT LIST``, the warm-up's one included); the p50/p99 of a lone awaited enqueue each way,
  the two ways alternating sample by sample.
- **Events on vs off** (``JOBQUEUE_EVENTS_MAXLEN=0`` writes no events): a burst worker draining
  N no-op jobs; the time Redis spent in jobqueue's scripts per job (``INFO commandstats``, the
  enqueues and the runs: where events cost anything at all, since the scripts write them), and
  the stream's bytes per job (``MEMORY USAGE`` of the stream, per event, times the events each
  job wrote).

Settings are read on first use and cached: each side sets the environment, clears the cache and
opens a fresh connection pool.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from time import perf_counter
from typing import TypeVar

import jobqueue
from bench import measure
from bench.config import CONCURRENCY, LIKE_FOR_LIKE_POLL_S, QUEUE
from bench.server import Admin
from bench.sides import Ours
from jobqueue.settings import get_settings

IN_FLIGHT = 100  # enqueue calls gathered at once
# Lone awaited enqueues per side, for the p50/p99: with 1,000 the p99 is the tenth-slowest sample,
# and one pause of the machine moved it by half from run to run.
LONE_SAMPLES = 5000
AUTO_PIPELINE = "JOBQUEUE_AUTO_PIPELINE"

Keep = Callable[[str, float], None]
T = TypeVar("T")


async def isolated(admin: Admin, step: Callable[[], Awaitable[T]]) -> T:
    """Run one measurement on a clean key space and clean up after it."""
    await admin.clean()
    try:
        return await step()
    finally:
        await admin.clean()


@asynccontextmanager
async def setting(name: str, value: str | None) -> AsyncIterator[None]:
    """``name`` set to ``value`` (None: unset, the default) for the block, on a fresh pool."""
    previous = os.environ.get(name)
    if value is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = value
    get_settings.cache_clear()
    await jobqueue.close_queues()
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = previous
        get_settings.cache_clear()
        await jobqueue.close_queues()


async def _clients(admin: Admin) -> set[int]:
    """Ids of the clients on the benchmark's database (the server may serve others, on theirs)."""
    db = admin.client.connection_pool.connection_kwargs.get("db", 0)
    return {int(c["id"]) for c in await admin.client.client_list() if int(c["db"]) == db}


async def in_flight_rate(admin: Admin, rounds: int) -> tuple[float, int]:
    """Jobs/s of ``rounds`` gathers of ``IN_FLIGHT`` enqueues, and the connections they opened."""
    await jobqueue.enqueue_product_embedding("warm")  # script loaded, first connection open
    before = await _clients(admin)
    start = perf_counter()
    for r in range(rounds):
        await asyncio.gather(*(jobqueue.enqueue_product_embedding(f"f{r}-{i}") for i in range(IN_FLIGHT)))
    elapsed = perf_counter() - start
    opened = len(await _clients(admin) - before) + 1
    return rounds * IN_FLIGHT / elapsed, opened


async def bulk_rate(rounds: int) -> float:
    """Jobs/s of ``rounds`` ``enqueue_many`` calls of ``IN_FLIGHT`` jobs."""
    await jobqueue.enqueue_product_embedding("warm")
    start = perf_counter()
    for r in range(rounds):
        await jobqueue.enqueue_many(QUEUE, measure.payloads(IN_FLIGHT, f"b{r}-"))
    return rounds * IN_FLIGHT / (perf_counter() - start)


async def lone_latencies(samples: int) -> dict[str, list[float]]:
    """Milliseconds of enqueues awaited one at a time, ``samples`` with auto-pipelining off and as
    many on, alternating sample by sample (on one pool), so that the machine's drift is shared."""
    await jobqueue.enqueue_product_embedding("warm")
    latencies: dict[str, list[float]] = {"off": [], "on": []}
    previous = os.environ.get(AUTO_PIPELINE)
    try:
        for i in range(2 * samples):
            label = ("off", "on")[i % 2]
            os.environ[AUTO_PIPELINE] = "false" if label == "off" else "true"
            get_settings.cache_clear()
            get_settings()  # read here, not inside the timed call
            start = perf_counter()
            await jobqueue.enqueue_product_embedding(f"l{i}")
            latencies[label].append((perf_counter() - start) * 1000)
    finally:
        if previous is None:
            os.environ.pop(AUTO_PIPELINE, None)
        else:
            os.environ[AUTO_PIPELINE] = previous
        get_settings.cache_clear()
    return latencies


async def stream_bytes_per_job(admin: Admin, jobs: int) -> float:
    """The events stream's memory per job: bytes per entry times the entries each job wrote."""
    key = f"jq:{QUEUE}:events"
    entries = int(await admin.client.xlen(key))
    if not entries:
        return 0.0
    memory = int(await admin.client.memory_usage(key, samples=0) or 0)
    added = int((await admin.client.xinfo_stream(key))["entries-added"])
    return memory / entries * added / jobs


async def run_toggles(admin: Admin, jobs: int, rounds: int, repeat: int, keep: Keep) -> None:
    """One repeat: every measurement for both values of its setting, order alternating."""
    ours = Ours()

    pipelining = [("off", "false"), ("on", None)]
    for label, value in pipelining if repeat % 2 == 0 else pipelining[::-1]:
        async with setting(AUTO_PIPELINE, value):
            rate, opened = await isolated(admin, lambda: in_flight_rate(admin, rounds))
            keep(f"inflight_{label}", rate)
            keep(f"inflight_connections_{label}", opened)
    async with setting(AUTO_PIPELINE, None):
        lone = await isolated(admin, lambda: lone_latencies(LONE_SAMPLES))
    for label, latencies in lone.items():
        keep(f"lone_p50_{label}", measure.percentile(latencies, 50))
        keep(f"lone_p99_{label}", measure.percentile(latencies, 99))
    keep("inflight_bulk", await isolated(admin, lambda: bulk_rate(rounds)))

    events = [("off", "0"), ("on", None)]
    for label, value in events if repeat % 2 == 0 else events[::-1]:
        async with setting("JOBQUEUE_EVENTS_MAXLEN", value):

            async def drain(label: str = label) -> float:
                before = await script_usec(admin)
                rate = await measure.process_rate(ours, jobs, concurrency=CONCURRENCY, poll_delay=LIKE_FOR_LIKE_POLL_S)
                keep(f"events_script_us_{label}", (await script_usec(admin) - before) / jobs)
                if label == "on":
                    keep("events_stream_bytes_per_job", await stream_bytes_per_job(admin, jobs))
                return rate

            keep(f"events_{label}", await isolated(admin, drain))


async def script_usec(admin: Admin) -> int:
    """Microseconds Redis has spent in scripts called by SHA (``INFO commandstats``, server-wide)."""
    stats = await admin.client.info("commandstats")
    return int(stats.get("cmdstat_evalsha", {}).get("usec", 0))
