"""The job handlers the fault scenarios run in real ``arq`` worker processes.

Options come from the environment (``JOBQUEUE_PRODUCT_EMBEDDING_*``), so each scenario starts
``python -m arq tests.faults.workers.StormSettings`` with the options it needs. Every run appends
events to ``jq:test:events``: ``start <product> <try> <pid> <unix time>`` when the handler begins, then
``ok ...`` or ``fail ...`` when it ends; a run whose worker was killed has a start and no end.
A payload's ``triggered_by`` steers the run: ``fail-once`` raises the first time it gets that far
(once per product, whatever crashes happen around it), ``always-fail`` raises every time.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

from jobqueue import ProductEmbeddingJobPayload, ProductEmbeddingJobResult
from jobqueue.worker import build_worker_settings
from jobqueue.worker.options import queue_options

EVENTS_KEY = "jq:test:events"
FAILED_ONCE_PREFIX = "jq:test:failed-once:"
SOAK_COUNTER = "jq:test:soak:ran"
# Milliseconds each storm job takes, so that a SIGKILL finds runs in flight.
JOB_MS_ENV = "FAULTS_JOB_MS"
# The failover scenario's record of runs: a file, since the Redis that would hold it is the one
# that fails over (and may lose what it was told).
RUNS_FILE_ENV = "FAULTS_RUNS_FILE"


async def storm_handler(ctx: dict[str, Any], payload: ProductEmbeddingJobPayload) -> ProductEmbeddingJobResult:
    redis, pid, run = ctx["redis"], payload.product_id, f"{payload.product_id} {ctx['job_try']} {os.getpid()}"
    await redis.rpush(EVENTS_KEY, f"start {run} {time.time():.3f}")
    job_ms = float(os.environ.get(JOB_MS_ENV, "0"))
    if job_ms:
        await asyncio.sleep(job_ms / 1000)
    mode = payload.triggered_by
    if mode == "always-fail" or (mode == "fail-once" and await redis.set(FAILED_ONCE_PREFIX + pid, 1, nx=True)):
        await redis.rpush(EVENTS_KEY, f"fail {run} {time.time():.3f}")
        raise RuntimeError(f"product {pid} failed on purpose ({mode})")
    await redis.rpush(EVENTS_KEY, f"ok {run} {time.time():.3f}")
    return ProductEmbeddingJobResult(status="processed", product_id=pid)


async def noop_handler(ctx: dict[str, Any], payload: ProductEmbeddingJobPayload) -> ProductEmbeddingJobResult:
    await ctx["redis"].incr(SOAK_COUNTER)
    return ProductEmbeddingJobResult(status="processed", product_id=payload.product_id)


async def recorded_handler(ctx: dict[str, Any], payload: ProductEmbeddingJobPayload) -> ProductEmbeddingJobResult:
    """Appends ``start <product> <pid>`` and ``ok <product> <pid>`` lines to ``FAULTS_RUNS_FILE``."""
    path, pid = os.environ[RUNS_FILE_ENV], os.getpid()
    _append(path, f"start {payload.product_id} {pid}\n")
    await asyncio.sleep(float(os.environ.get(JOB_MS_ENV, "0")) / 1000)
    _append(path, f"ok {payload.product_id} {pid}\n")
    return ProductEmbeddingJobResult(status="processed", product_id=payload.product_id)


def _append(path: str, line: str) -> None:
    # One write of a short line to a file opened for appending: whole, even with two processes.
    with open(path, "a") as runs:
        runs.write(line)


def _settings(name: str, handler: Any) -> type:
    return build_worker_settings("product-embedding", handler, name=name, options=queue_options("product-embedding"))


StormSettings = _settings("StormSettings", storm_handler)
NoopSettings = _settings("NoopSettings", noop_handler)
RecordedSettings = _settings("RecordedSettings", recorded_handler)


def worker_env(**options: object) -> dict[str, str]:
    """``JOBQUEUE_PRODUCT_EMBEDDING_<OPTION>`` variables for a worker process."""
    return {f"JOBQUEUE_PRODUCT_EMBEDDING_{k.upper()}": str(v) for k, v in options.items()}


def parse_events(raw: list[bytes]) -> list[tuple[str, str, int, int, float]]:
    """``(kind, product, try, pid, unix time)`` per event, in the order they happened."""
    events = []
    for line in raw:
        kind, product, job_try, pid, at = line.decode().split(" ")
        events.append((kind, product, int(job_try), int(pid), float(at)))
    return events
