"""Runs every measurement for both sides, interleaved, repeat after repeat, and keeps the values."""

from __future__ import annotations

import statistics
import sys
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TypeVar

import jobqueue
from bench import measure, toggles
from bench.config import CONCURRENCY, LIKE_FOR_LIKE_POLL_S, WARMUP_JOBS, WIDE_CONCURRENCY, Config
from bench.server import Admin
from bench.sides import Ours, RawArq, Side

T = TypeVar("T")
# (measurement, side name) -> one value per repeat
Values = dict[tuple[str, str], list[float]]


_START = time.perf_counter()


def progress(message: str) -> None:
    print(f"[{time.perf_counter() - _START:6.1f}s] {message}", file=sys.stderr, flush=True)


async def isolated(admin: Admin, step: Callable[[], Awaitable[T]]) -> T:
    """Run one measurement on a clean key space and clean up after it, whatever happens."""
    await admin.clean()
    try:
        return await step()
    finally:
        await admin.clean()


async def warm_up(admin: Admin, sides: tuple[Side, ...]) -> None:
    """Open connections and load scripts on both sides, so no measurement pays for them."""
    for side in sides:
        await isolated(admin, lambda s=side: s.enqueue_bulk(measure.payloads(WARMUP_JOBS, "warm")))
        await isolated(admin, lambda s=side: measure.enqueue_rate(s, WARMUP_JOBS))


async def run_repeat(cfg: Config, admin: Admin, ours: Ours, arq: RawArq, repeat: int, values: Values) -> None:
    sides: tuple[Side, ...] = (ours, arq) if repeat % 2 == 0 else (arq, ours)
    n = cfg.jobs

    def keep(name: str, side: Side, value: float, unit: str) -> None:
        values[(name, side.name)].append(value)
        progress(f"  {name:<18} {side.name:<9} {value:>12,.2f} {unit}")

    for side in sides:
        keep("enqueue", side, await isolated(admin, lambda s=side: measure.enqueue_rate(s, n)), "jobs/s")
    for side in sides:
        keep("bulk", side, await isolated(admin, lambda s=side: measure.bulk_rate(s, n)), "jobs/s")
    processing = (
        ("process@0.01", LIKE_FOR_LIKE_POLL_S, CONCURRENCY),
        ("process@defaults", None, CONCURRENCY),
        ("process@c100", LIKE_FOR_LIKE_POLL_S, WIDE_CONCURRENCY),
    )
    for name, poll, concurrency in processing:
        for side in sides:
            jobs = cfg.slow_jobs if side is arq and poll is None else n

            async def drain(s: Side = side, jobs: int = jobs, poll: float | None = poll, c: int = concurrency) -> float:
                return await measure.process_rate(s, jobs, concurrency=c, poll_delay=poll)

            keep(name, side, await isolated(admin, drain), "jobs/s")
    for side in sides:
        total = cfg.slow_samples if side is arq else cfg.samples
        count = max(1, total // cfg.repeat + int(repeat < total % cfg.repeat))  # this repeat's share of the pool
        latencies = await isolated(admin, lambda s=side, k=count: measure.pickup_latency(s, k))
        values[("latency", side.name)] += latencies
        p50 = statistics.median(latencies)
        progress(f"  {'latency':<18} {side.name:<9} {p50:>12,.2f} ms (median of {len(latencies)} samples)")
    for side in sides:
        keep("memory", side, await isolated(admin, lambda s=side: measure.bytes_per_job(s, admin, n)), "bytes/job")


@asynccontextmanager
async def open_sides(url: str) -> AsyncIterator[tuple[Admin, Ours, RawArq]]:
    """The admin client and both sides, warmed up; on exit the keys are cleaned and all closed."""
    admin, ours, arq = Admin(url), Ours(), await RawArq.connect(url)
    try:
        await warm_up(admin, (ours, arq))
        yield admin, ours, arq
    finally:
        await admin.clean()
        await arq.aclose()
        await jobqueue.close_queues()
        await admin.aclose()


async def run_toggles(cfg: Config, admin: Admin) -> dict[str, float]:
    """jobqueue against itself (``bench.toggles``): the median over ``cfg.repeat`` repeats."""
    values: dict[str, list[float]] = defaultdict(list)
    for r in range(cfg.repeat):
        progress(f"settings on/off, repeat {r + 1}/{cfg.repeat}")

        def keep(name: str, value: float) -> None:
            values[name].append(value)
            progress(f"  {name:<30} {value:>12,.2f}")

        await toggles.run_toggles(admin, cfg.jobs, cfg.rounds, r, keep)
    return {name: statistics.median(v) for name, v in values.items()}


async def run_toggles_only(cfg: Config, url: str) -> dict[str, float]:
    admin = Admin(url)
    try:
        return await run_toggles(cfg, admin)
    finally:
        await admin.clean()
        await jobqueue.close_queues()
        await admin.aclose()


async def run_all(cfg: Config, url: str) -> tuple[dict[tuple[str, str], float], dict[str, float]]:
    """The median over ``cfg.repeat`` repeats of every (measurement, side); latency percentiles are
    taken over the samples of all repeats."""
    values: Values = defaultdict(list)
    async with open_sides(url) as (admin, ours, arq):
        for r in range(cfg.repeat):
            progress(f"repeat {r + 1}/{cfg.repeat} ({'jobqueue' if r % 2 == 0 else 'raw arq'} first)")
            await run_repeat(cfg, admin, ours, arq, r, values)
        own = await run_toggles(cfg, admin)
    medians = {key: statistics.median(v) for key, v in values.items() if key[0] != "latency"}
    for side in (ours, arq):
        samples = values[("latency", side.name)]
        medians[("latency_p50", side.name)] = measure.percentile(samples, 50)
        medians[("latency_p95", side.name)] = measure.percentile(samples, 95)
        medians[("latency_n", side.name)] = len(samples)
    return medians, own
