"""The table, the notes that say how each number was taken, and the one-line summary."""

from __future__ import annotations

import os
import platform

import arq.version
import redis
from redis.utils import HIREDIS_AVAILABLE

from bench.config import (
    ARQ_DEFAULT_POLL_S,
    ARQ_GATHER,
    CONCURRENCY,
    LIKE_FOR_LIKE_POLL_S,
    OURS_BULK,
    WIDE_CONCURRENCY,
    Config,
)
from jobqueue import QueueOptions

OURS, ARQ = "jobqueue", "raw arq"
Medians = dict[tuple[str, str], float]

# label, ours (measurement, side), arq (measurement, side), decimals
ROWS = (
    ("enqueue one at a time, awaited (jobs/s)", ("enqueue", OURS), ("enqueue", ARQ), 0),
    ("bulk enqueue (jobs/s)", ("bulk", OURS), ("bulk", ARQ), 0),
    ("process no-op, each side's defaults (jobs/s)", ("process@defaults", OURS), ("process@defaults", ARQ), 0),
    (
        f"process no-op, both poll_delay {LIKE_FOR_LIKE_POLL_S} (jobs/s)",
        ("process@0.01", OURS),
        ("process@0.01", ARQ),
        0,
    ),
    (
        f"process no-op, concurrency {WIDE_CONCURRENCY}, both poll_delay {LIKE_FOR_LIKE_POLL_S} (jobs/s)",
        ("process@c100", OURS),
        ("process@c100", ARQ),
        0,
    ),
    (
        f"process no-op, ours@defaults vs arq@{LIKE_FOR_LIKE_POLL_S} (jobs/s)",
        ("process@defaults", OURS),
        ("process@0.01", ARQ),
        0,
    ),
    ("pickup latency p50, idle worker (ms; lower is better)", ("latency_p50", OURS), ("latency_p50", ARQ), 1),
    ("pickup latency p95, idle worker (ms; lower is better)", ("latency_p95", OURS), ("latency_p95", ARQ), 1),
    ("Redis bytes per waiting job (lower is better)", ("memory", OURS), ("memory", ARQ), 0),
)


def ratio(m: Medians, ours: tuple[str, str], arq: tuple[str, str]) -> float:
    return m[ours] / m[arq]


def table(m: Medians) -> str:
    head = ("measurement", "ours", "raw arq", "ratio")
    rows = [(label, f"{m[o]:,.{d}f}", f"{m[a]:,.{d}f}", f"{ratio(m, o, a):.2f}x") for label, o, a, d in ROWS]
    widths = [max(len(r[i]) for r in (head, *rows)) for i in range(4)]
    line = "  ".join("-" * w for w in widths)

    def fmt(r: tuple[str, ...]) -> str:
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True)))

    return "\n".join([fmt(head), line, *map(fmt, rows)])


def notes(m: Medians, cfg: Config, origin: str, server: str, ours: QueueOptions) -> str:
    return "\n".join(
        [
            f"machine: {os.cpu_count()} CPUs (load average {os.getloadavg()[0]:.2f} at the end), "
            f"{platform.platform()}, Python {platform.python_version()}, "
            f"{server} ({origin}), arq {arq.version.VERSION}, redis-py {redis.__version__}"
            f"{' + hiredis' if HIREDIS_AVAILABLE else ''}",
            f"run: N={cfg.jobs} jobs, median of {cfg.repeat} repeat(s); within a repeat each measurement runs "
            "for both sides back to back, the order alternating between repeats; keys cleaned before and after each",
            "fairness: arq gets a compact JSON serializer/deserializer (jobqueue stores JSON only), "
            "its default job expiry and keep_result (3600 s: it keeps results as jobqueue keeps records)",
            f"bulk: ours = {OURS_BULK}; arq = asyncio.gather of {ARQ_GATHER} enqueue_job calls at a time",
            f"process: a burst worker (start-up included) drains pre-enqueued no-op jobs, concurrency {CONCURRENCY}; "
            f"defaults: poll_delay {ours.poll_delay} for ours, {ARQ_DEFAULT_POLL_S} for arq, which then drains "
            f"{cfg.slow_jobs} jobs (it starts at most ~100 per poll, so its rate does not grow with N)",
            f"latency: {m[('latency_n', OURS)]:.0f} (ours) and {m[('latency_n', ARQ)]:.0f} (arq) jobs, pooled over "
            "the repeats, one at a time, from the enqueue call to the handler's first line; "
            f"each side's default worker (ours: concurrency {ours.concurrency}, poll {ours.poll_delay}; "
            f"arq: max_jobs 10, poll {ARQ_DEFAULT_POLL_S}); a random 0..poll_delay pause before each enqueue "
            "puts arrivals at a random point of the poll cycle",
            "memory: (used_memory - mem_clients_normal) after minus before enqueuing N waiting jobs, over N",
        ]
    )


def summary(m: Medians) -> str:
    """The last line of the output."""
    enqueue = ratio(m, ("enqueue", OURS), ("enqueue", ARQ))
    bulk = ratio(m, ("bulk", OURS), ("bulk", ARQ))
    process = ratio(m, ("process@defaults", OURS), ("process@defaults", ARQ))
    memory = ratio(m, ("memory", OURS), ("memory", ARQ))
    p50 = m[("latency_p50", OURS)]
    return (
        f"bench: enqueue={enqueue:.2f}x bulk={bulk:.2f}x process={process:.2f}x "
        f"latency_p50_ms={p50:.1f} memory={memory:.2f}x"
    )


# jobqueue against itself. label, the two values' keys, decimals; the ratio is second / first.
TOGGLE_ROWS = (
    ("100 enqueues in flight (gather), auto-pipelining off -> on (jobs/s)", "inflight_off", "inflight_on", 0),
    ("100 in flight, auto-pipelining on vs add_bulk of 100 (jobs/s)", "inflight_bulk", "inflight_on", 0),
    (
        "Redis connections opened by the gathers, off -> on",
        "inflight_connections_off",
        "inflight_connections_on",
        0,
    ),
    ("lone awaited enqueue p50, off -> on (ms; lower is better)", "lone_p50_off", "lone_p50_on", 3),
    ("lone awaited enqueue p99, off -> on (ms; lower is better)", "lone_p99_off", "lone_p99_on", 3),
    ("process no-op, events stream off -> on (jobs/s)", "events_off", "events_on", 0),
    (
        "Redis time in scripts per job, events off -> on (us; lower is better)",
        "events_script_us_off",
        "events_script_us_on",
        1,
    ),
)


def toggles_table(m: dict[str, float]) -> str:
    head = ("jobqueue, a setting off and on", "first", "second", "second/first")
    rows = [(label, f"{m[a]:,.{d}f}", f"{m[b]:,.{d}f}", f"{m[b] / m[a]:.2f}x") for label, a, b, d in TOGGLE_ROWS]
    stream = f"{m['events_stream_bytes_per_job']:,.0f}"
    rows.append(("events stream, bytes per job (MEMORY USAGE / jobs)", "", stream, ""))
    widths = [max(len(r[i]) for r in (head, *rows)) for i in range(4)]

    def fmt(r: tuple[str, ...]) -> str:
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True)))

    return "\n".join([fmt(head), "  ".join("-" * w for w in widths), *map(fmt, rows)])


def toggles_notes(m: dict[str, float], cfg: Config) -> str:
    return "\n".join(
        [
            f"settings: median of {cfg.repeat} repeat(s), the off/on order alternating; each side on a fresh pool",
            f"in flight: {cfg.rounds} rounds of asyncio.gather of 100 enqueue_product_embedding calls "
            "(JOBQUEUE_AUTO_PIPELINE=false, then the default), against enqueue_many of 100 jobs, same rounds; "
            "connections: new client ids in CLIENT LIST during the gathers, plus the warm-up's one",
            "lone enqueue: 5,000 enqueues awaited one at a time each way, off and on alternating sample by sample",
            f"events: a burst worker (concurrency {CONCURRENCY}, poll_delay {LIKE_FOR_LIKE_POLL_S}) drains "
            f"N={cfg.jobs} no-op jobs with JOBQUEUE_EVENTS_MAXLEN=0 (no events written) "
            "and with the default (10,000 kept); "
            "script time: usec of EVALSHA in INFO commandstats across the enqueue and the drain, over N "
            "(server-wide: other clients of the same server count too); "
            "bytes per job: MEMORY USAGE of the stream / its entries x the entries each job added (XINFO STREAM)",
        ]
    )


def toggles_summary(m: dict[str, float]) -> str:
    return (
        f"bench settings: inflight={m['inflight_on'] / m['inflight_off']:.2f}x "
        f"inflight_vs_bulk={m['inflight_on'] / m['inflight_bulk']:.2f}x "
        f"lone_p99_ms={m['lone_p99_off']:.3f}->{m['lone_p99_on']:.3f} "
        f"events={m['events_on'] / m['events_off']:.2f}x "
        f"events_script_time={m['events_script_us_on'] / m['events_script_us_off']:.2f}x "
        f"stream_bytes_per_job={m['events_stream_bytes_per_job']:.0f}"
    )
