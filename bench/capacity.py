"""``python -m bench capacity [--quick] [--jobs N] [--shape-jobs N]``: how far one Redis goes.

On a Redis server of its own (started here, so its CPU counters count this run alone):

1. **Worker processes.** N waiting no-op ``product-embedding`` jobs, drained by 1, 2 and 4 ``arq``
   worker processes (the queue's own options): jobs/s from ``resume()`` to the last completion,
   and Redis CPU time per job over the drain.
2. **Each queue's job shape.** For each of the five queues, jobs with that queue's real payload and
   result, enqueued as an API does (one call per job, 100 in flight) and run by one worker process
   with that queue's options (concurrency, retention): Redis CPU time per job to enqueue and to
   run, and from their sum the jobs/s one Redis core serves for that queue.

Redis CPU time is ``used_cpu_sys + used_cpu_user`` from ``INFO cpu``, read before and after each
step. The job's own work (LLM calls, SQL) is left out: it costs Redis nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import redis

import jobqueue
from bench.capacity_worker import QUEUE_ENV
from bench.server import own_server
from bench.shapes import payload
from jobqueue.constants import QueueName
from jobqueue.settings import get_settings

ROOT: Final = Path(__file__).resolve().parents[1]
PROCESS_COUNTS: Final = (1, 2, 4)
IN_FLIGHT: Final = 100  # enqueues in flight at once, as from a busy API
POLL_S: Final = 0.05
START_TIMEOUT_S: Final = 30.0
DRAIN_TIMEOUT_S: Final = 600.0


@dataclass(frozen=True, slots=True)
class Args:
    jobs: int  # jobs per process-count row
    shape_jobs: int  # jobs per queue-shape row


def parse_args(argv: list[str]) -> Args:
    parser = argparse.ArgumentParser(prog="python -m bench capacity", description="Redis capacity per queue.")
    parser.add_argument("--quick", action="store_true", help="a short run (jobs 4000, shape jobs 1000)")
    parser.add_argument("--jobs", type=int, help="jobs per worker-process row (default 20000)")
    parser.add_argument("--shape-jobs", type=int, help="jobs per queue-shape row (default 5000)")
    a = parser.parse_args(argv)
    jobs = a.jobs or (4000 if a.quick else 20000)
    shape_jobs = a.shape_jobs or (1000 if a.quick else 5000)
    if min(jobs, shape_jobs) < 100:
        parser.error("--jobs and --shape-jobs must be at least 100")
    return Args(jobs, shape_jobs)


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# -- the server's counters --------------------------------------------------------------------


class Counters:
    """The server's CPU seconds and version, read through a client of the benchmark's own."""

    def __init__(self, url: str) -> None:
        self.client = redis.Redis.from_url(url)

    def cpu(self) -> float:
        info = self.client.info("cpu")
        return float(info["used_cpu_sys"]) + float(info["used_cpu_user"])

    def version(self) -> str:
        info = self.client.info("server")
        return (
            f"valkey-server {info['valkey_version']}"
            if "valkey_version" in info
            else f"redis-server {info['redis_version']}"
        )

    def flush(self) -> None:
        self.client.flushdb()


# -- workers ----------------------------------------------------------------------------------


class Workers:
    """``count`` ``arq bench.capacity_worker.CapacitySettings`` processes for ``queue``."""

    def __init__(self, queue: str, count: int, url: str) -> None:
        env = {**os.environ, "PYTHONPATH": str(ROOT), "REDIS_URL": url, QUEUE_ENV: queue}
        self.procs = [
            subprocess.Popen(
                [sys.executable, "-m", "arq", "bench.capacity_worker.CapacitySettings"],
                env=env,
                cwd=ROOT,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            for _ in range(count)
        ]

    async def wait_started(self, queue: jobqueue.Queue) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while len(await queue.get_workers()) < len(self.procs):
            if time.monotonic() > deadline or any(p.poll() is not None for p in self.procs):
                raise SystemExit(f"bench: the {queue.name} workers did not start")
            await asyncio.sleep(POLL_S)

    def stop(self) -> None:
        for proc in self.procs:
            proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


async def wait_completed(queue: jobqueue.Queue, n: int) -> None:
    """Until none of the ``n`` jobs is left to run (completed records are trimmed to the queue's
    retention, so their count is not the measure)."""
    deadline = time.monotonic() + DRAIN_TIMEOUT_S
    while True:
        got = await queue.get_job_counts()
        if got["failed"]:
            raise SystemExit(f"bench: {got['failed']} {queue.name} jobs failed")
        left = got["waiting"] + got["active"] + got["delayed"] + got["paused"]
        if not left:
            return
        if time.monotonic() > deadline:
            raise SystemExit(f"bench: {queue.name} still had {left} of {n} jobs to run after {DRAIN_TIMEOUT_S:g}s")
        await asyncio.sleep(POLL_S)


# -- job shapes -------------------------------------------------------------------------------


async def enqueue_as_an_api(queue: jobqueue.Queue, n: int) -> None:
    """One enqueue call per job, ``IN_FLIGHT`` at once (reminders at their ``scheduled_for``)."""
    for start in range(0, n, IN_FLIGHT):
        calls = []
        for i in range(start, min(start + IN_FLIGHT, n)):
            body = payload(queue.name, i)
            run_at = body["scheduled_for"] if queue.name == QueueName.REMINDER_DISPATCH else None
            calls.append(queue.enqueue(body, run_at=run_at))
        await asyncio.gather(*calls)


# -- the two measurements ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ProcessRow:
    processes: int
    jobs: int
    seconds: float
    redis_cpu_s: float


@dataclass(frozen=True, slots=True)
class ShapeRow:
    queue: str
    jobs: int
    payload_bytes: int
    concurrency: int
    enqueue_cpu_s: float
    run_cpu_s: float

    @property
    def us_per_job(self) -> float:
        return (self.enqueue_cpu_s + self.run_cpu_s) / self.jobs * 1e6


async def drain_with(processes: int, n: int, url: str, counters: Counters) -> ProcessRow:
    queue = jobqueue.product_embedding_queue
    counters.flush()
    await queue.pause()
    await queue.add_bulk([payload(queue.name, i) for i in range(n)])
    workers = Workers(queue.name, processes, url)
    try:
        await workers.wait_started(queue)
        cpu, start = counters.cpu(), time.perf_counter()
        await queue.resume()
        await wait_completed(queue, n)
        row = ProcessRow(processes, n, time.perf_counter() - start, counters.cpu() - cpu)
    finally:
        workers.stop()
    return row


async def shape(queue: jobqueue.Queue, n: int, url: str, counters: Counters) -> ShapeRow:
    counters.flush()
    workers = Workers(queue.name, 1, url)
    try:
        await workers.wait_started(queue)
        await queue.pause()  # enqueue first, then run: each phase's CPU on its own
        cpu = counters.cpu()
        await enqueue_as_an_api(queue, n)
        enqueued = counters.cpu()
        await queue.resume()
        await wait_completed(queue, n)
        ran = counters.cpu()
    finally:
        workers.stop()
    size = len(queue.prepare(payload(queue.name, 0)).job_head)
    return ShapeRow(queue.name, n, size, jobqueue.queue_options(queue.name).concurrency, enqueued - cpu, ran - enqueued)


# -- the report -------------------------------------------------------------------------------


def report(processes: list[ProcessRow], shapes: list[ShapeRow], server: str, argv: list[str]) -> str:
    command = " ".join(["python -m bench capacity", *argv])
    lines = [
        f"`{command}` on {server} (a server of the run's own), {os.cpu_count()} CPU cores",
        "",
        "Worker processes draining no-op `product-embedding` jobs (the queue's options):",
        "",
        "| worker processes | jobs | jobs/s | Redis CPU µs/job (run) | Redis CPU busy |",
        "|---:|---:|---:|---:|---:|",
    ]
    for p in processes:
        lines.append(
            f"| {p.processes} | {p.jobs:,} | {p.jobs / p.seconds:,.0f} | {p.redis_cpu_s / p.jobs * 1e6:,.0f} "
            f"| {p.redis_cpu_s / p.seconds:.0%} |"
        )
    lines += [
        "",
        "Each queue's job shape (enqueued one call per job, 100 in flight; run by one worker process):",
        "",
        "| queue | job JSON bytes | concurrency | Redis CPU µs/job: enqueue | run | total | jobs/s per Redis core |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for s in shapes:
        enqueue_us, run_us = s.enqueue_cpu_s / s.jobs * 1e6, s.run_cpu_s / s.jobs * 1e6
        lines.append(
            f"| {s.queue} | {s.payload_bytes} | {s.concurrency} | {enqueue_us:,.0f} | {run_us:,.0f} "
            f"| {s.us_per_job:,.0f} | {1e6 / s.us_per_job:,.0f} |"
        )
    return "\n".join(lines)


async def run(args: Args, url: str, counters: Counters) -> tuple[list[ProcessRow], list[ShapeRow]]:
    processes, shapes = [], []
    try:
        for count in PROCESS_COUNTS:
            progress(f"capacity: {args.jobs} jobs, {count} worker process(es)")
            processes.append(await drain_with(count, args.jobs, url, counters))
        for queue in jobqueue.QUEUES.values():
            progress(f"capacity: {args.shape_jobs} {queue.name} jobs")
            shapes.append(await shape(queue, args.shape_jobs, url, counters))
    finally:
        await jobqueue.close_queues()
    return processes, shapes


def main(argv: list[str]) -> None:
    args = parse_args(argv)
    with own_server() as url:
        os.environ["REDIS_URL"] = url  # jobqueue reads it on first use
        for name in list(os.environ):
            if name.startswith("JOBQUEUE_") and name.endswith("_REDIS_URL"):
                del os.environ[name]  # every queue on this server
        get_settings.cache_clear()
        counters = Counters(url)
        processes, shapes = asyncio.run(run(args, url, counters))
        print(report(processes, shapes, counters.version(), argv))
