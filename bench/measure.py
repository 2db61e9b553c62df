"""The five measurements; each takes one side and leaves cleanup to the caller."""

from __future__ import annotations

import asyncio
import random
import statistics
from time import perf_counter

from bench.config import IDLE_BEFORE_SAMPLES_S, PICKUP_DEADLINE_S
from bench.server import Admin
from bench.sides import Side


def payloads(n: int, prefix: str = "p") -> list[dict[str, str]]:
    return [{"product_id": f"{prefix}{i}"} for i in range(n)]


async def enqueue_rate(side: Side, n: int) -> float:
    """Jobs/s enqueuing one job at a time, each awaited before the next."""
    ids = [f"p{i}" for i in range(n)]
    start = perf_counter()
    for product_id in ids:
        await side.enqueue_one(product_id)
    return n / (perf_counter() - start)


async def bulk_rate(side: Side, n: int) -> float:
    """Jobs/s enqueuing ``n`` jobs with the side's bulk path."""
    jobs = payloads(n)
    start = perf_counter()
    await side.enqueue_bulk(jobs)
    return n / (perf_counter() - start)


async def drain(side: Side, n: int, *, concurrency: int, poll_delay: float | None) -> float:
    """Seconds a burst worker takes to run the ``n`` jobs waiting (its start-up included)."""
    worker = side.worker(None, burst=True, concurrency=concurrency, poll_delay=poll_delay)
    start = perf_counter()
    try:
        await worker.async_run()
        elapsed = perf_counter() - start
    finally:
        await worker.close()
    if side.completed(worker) != n:
        raise RuntimeError(f"{side.name}: {side.completed(worker)} of {n} jobs completed ({worker!r})")
    return elapsed


async def process_rate(side: Side, n: int, *, concurrency: int, poll_delay: float | None) -> float:
    """Jobs/s of a burst worker draining ``n`` waiting no-op jobs."""
    await side.enqueue_bulk(payloads(n))
    return n / await drain(side, n, concurrency=concurrency, poll_delay=poll_delay)


async def _until_started(event: asyncio.Event, run: asyncio.Task[None]) -> None:
    waiter = asyncio.create_task(event.wait())
    done, _ = await asyncio.wait({waiter, run}, timeout=PICKUP_DEADLINE_S, return_when=asyncio.FIRST_COMPLETED)
    if waiter not in done:
        waiter.cancel()
        if run in done:
            run.result()  # the worker died: raise its error
        raise TimeoutError(f"a job did not start within {PICKUP_DEADLINE_S}s")


async def pickup_latency(side: Side, samples: int) -> list[float]:
    """Milliseconds from the enqueue call to the handler's start, one job at a time, idle worker.

    Before each enqueue the benchmark pauses a random 0 to poll_delay, so jobs arrive at a random
    point of the worker's poll cycle, as real ones do (enqueuing right after the previous pickup
    would always land just after a poll, i.e. measure the worst case).
    """
    started: dict[str, float] = {}
    event = asyncio.Event()

    def on_start(product_id: str) -> None:
        started[product_id] = perf_counter()
        event.set()

    worker = side.worker(on_start, burst=False)
    run = asyncio.create_task(worker.async_run())
    latencies = []
    try:
        await asyncio.sleep(IDLE_BEFORE_SAMPLES_S)
        for i in range(samples):
            await asyncio.sleep(random.uniform(0, side.default_poll_delay))
            event.clear()
            product_id = f"lat{i}"
            sent = perf_counter()
            await side.enqueue_one(product_id)
            await _until_started(event, run)
            latencies.append((started[product_id] - sent) * 1000)
        if worker.tasks:  # let the last run finish its bookkeeping before stopping the worker
            await asyncio.wait(list(worker.tasks.values()), timeout=PICKUP_DEADLINE_S)
    finally:
        await worker.close()
        await asyncio.gather(run, return_exceptions=True)
    return latencies


def percentile(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


async def bytes_per_job(side: Side, admin: Admin, n: int) -> float:
    """Redis memory per waiting job: data memory after minus before enqueuing ``n`` jobs, over ``n``."""
    jobs = payloads(n)
    before = await admin.data_memory()
    await side.enqueue_bulk(jobs)
    after = await admin.data_memory()
    return (after - before) / n
