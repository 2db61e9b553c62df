"""The benchmark's names and numbers, in one place."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

QUEUE: Final = "product-embedding"  # jobqueue's queue under test
FUNCTION: Final = "product_embedding"  # arq function name on both sides
ARQ_QUEUE: Final = "bench:arq"  # raw arq's queue zset
OWNED_PATTERNS: Final = ("jq:*", "arq:*", "bench:*")  # the only keys the benchmark deletes

CONCURRENCY: Final = 10  # processing: jobs run at once on both sides
WIDE_CONCURRENCY: Final = 100  # processing, the wide row: jobs run at once on both sides
LIKE_FOR_LIKE_POLL_S: Final = 0.01  # processing: the poll delay both sides get for the fair ratio
ARQ_DEFAULT_POLL_S: Final = 0.5  # arq's own default poll_delay
ARQ_GATHER: Final = 100  # bulk on the arq side: enqueue_job calls gathered at a time
OURS_BULK: Final = "all N jobs in one enqueue_many call (jobqueue pipelines 1,000 per script call)"

IDLE_BEFORE_SAMPLES_S: Final = 0.3  # latency: the worker idles this long before the first sample
PICKUP_DEADLINE_S: Final = 5.0  # latency: a job not started within this fails the run
WARMUP_JOBS: Final = 200  # jobs each side enqueues (then deletes) before anything is timed


@dataclass(frozen=True, slots=True)
class Config:
    """How much to measure."""

    jobs: int  # N: jobs per throughput and memory measurement
    repeat: int  # R: the median of R repeats is reported
    samples: int  # pickup latency samples of ours, pooled over the repeats
    slow_samples: int  # ... of arq, whose every sample waits out a 0.5 s poll cycle
    slow_jobs: int  # jobs drained by arq at its default poll delay (its rate does not depend on N)
    rounds: int = 20  # settings on/off: gathers of 100 enqueues (and bulk calls of 100) per side


def make_config(*, quick: bool, jobs: int | None, repeat: int | None) -> Config:
    n = jobs if jobs is not None else (3000 if quick else 20000)
    return Config(
        jobs=n,
        repeat=repeat if repeat is not None else (1 if quick else 3),
        samples=50 if quick else 200,
        slow_samples=16 if quick else 200,
        slow_jobs=min(n, 500 if quick else 2000),
        rounds=20 if quick else 100,
    )
