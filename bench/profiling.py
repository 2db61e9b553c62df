"""``python -m bench --profile``: Redis commands, CPU time and hot functions per job, both sides.

Every step runs once and instrumented, so no rates are reported. Counted: the commands this
process sent and its socket writes (round trips), the server's INFO commandstats and CPU deltas
(commands run inside Lua scripts included; server-wide, so run it on a server of its own for clean
server numbers, e.g. with REDIS_URL unset), and this process's CPU time. Then cProfile over
enqueueing one at a time and over the like-for-like drain, for each side.
"""

from __future__ import annotations

import cProfile
import pstats
from collections.abc import Awaitable, Callable
from typing import Any

from bench import measure
from bench.config import CONCURRENCY, LIKE_FOR_LIKE_POLL_S, Config
from bench.counting import ClientCounts, Meter, client_counting
from bench.runner import open_sides
from bench.server import Admin
from bench.sides import Side

Step = Callable[[], Awaitable[Any]]
TOP = 15
# Functions whose cumulative time is shown however small: where the two sides differ.
FOCUS = (
    ("jobqueue/", ""),
    ("arq/worker.py", "start_jobs"),
    ("arq/worker.py", "run_job"),
    ("arq/worker.py", "finish_job"),
    ("arq/connections.py", "enqueue_job"),
    ("redis/asyncio/client.py", "execute"),
    ("redis/asyncio/client.py", "execute_command"),
    ("pydantic/main.py", "model_validate"),
    ("pydantic/main.py", "model_dump"),
    ("json/__init__.py", "dumps"),
)


def _per_job(counter: dict[str, int], n: int) -> str:
    items = sorted(((k, v) for k, v in counter.items() if k.lower() != "info"), key=lambda kv: -kv[1])
    return ", ".join(f"{k} {v / n:.2f}" for k, v in items if v / n >= 0.005)


def _report(label: str, side: Side, n: int, counts: ClientCounts, meter: Meter) -> None:
    server = meter.server
    assert server is not None
    sent = sum(v for k, v in counts.commands.items() if k != "INFO")
    executed = sum(v for k, v in server.calls.items() if k != "info")
    usec = sum(v for k, v in server.usec.items() if k != "info")
    print(f"\n{label} -- {side.name}, N={n}")
    print(
        f"  per job: {counts.writes / n:.2f} round trips, {sent / n:.2f} commands sent, {executed / n:.2f} executed "
        f"by the server; wall {meter.wall_s / n * 1e6:,.0f} us, this process's CPU {meter.cpu_s / n * 1e6:,.0f} us "
        f"({meter.cpu_s / meter.wall_s:.0%} busy), server CPU {server.cpu_s / n * 1e6:,.0f} us "
        f"(in commands {usec / n:,.1f} us)"
    )
    print(f"  sent:     {_per_job(counts.commands, n)}")
    print(f"  executed: {_per_job(server.calls, n)}")
    top = [(k, v) for k, v in server.usec.most_common(9) if k != "info"]
    print(f"  server us/job: {', '.join(f'{k} {v / n:.1f}' for k, v in top)}")


async def _counted(admin: Admin, label: str, side: Side, n: int, setup: Step | None, step: Step) -> None:
    await admin.clean()
    try:
        if setup is not None:
            await setup()
        with client_counting() as counts:
            async with Meter(admin) as meter:
                await step()
        _report(label, side, n, counts, meter)
    finally:
        await admin.clean()


def _short(path: str) -> str:
    return path.split("site-packages/")[-1].split("/work/main/")[-1].split("python3.11/")[-1]


def _print_profile(stats: Any, n: int) -> None:
    """Top functions by own time, then the focus functions by cumulative time, in us per job."""
    rows = stats.stats.items()
    total = sum(tt for (_cc, _nc, tt, _ct, _callers) in stats.stats.values())
    print(f"  profiled CPU {total / n * 1e6:,.0f} us/job;   own us   cum us  calls/job  (own/cum: % of profiled CPU)")

    def line(key: tuple[str, int, str], v: tuple[Any, ...]) -> str:
        _cc, nc, tt, ct, _ = v
        return (
            f"  {tt / n * 1e6:8.1f} {ct / n * 1e6:8.1f} {nc / n:6.2f}  {tt / total:4.0%}/{ct / total:4.0%}  "
            f"{_short(key[0])}:{key[1]}({key[2]})"
        )

    for key, v in sorted(rows, key=lambda kv: -kv[1][2])[:TOP]:
        print(line(key, v))
    print("  -- focus, by cumulative time")
    focus = [(k, v) for k, v in rows if any(p in k[0] and f in k[2] for p, f in FOCUS)]
    for key, v in sorted(focus, key=lambda kv: -kv[1][3])[:TOP]:
        print(line(key, v))


async def _profiled(admin: Admin, label: str, side: Side, n: int, setup: Step | None, step: Step) -> None:
    await admin.clean()
    try:
        if setup is not None:
            await setup()
        profiler = cProfile.Profile()
        profiler.enable()
        await step()
        profiler.disable()
    finally:
        await admin.clean()
    print(f"\ncProfile: {label} -- {side.name}, N={n}")
    _print_profile(pstats.Stats(profiler), n)


def _steps(side: Side, n: int, slow_jobs: int, is_arq: bool) -> list[tuple[str, int, Step | None, Step]]:
    def fill(k: int) -> Step:
        return lambda: side.enqueue_bulk(measure.payloads(k))

    def drain(k: int, poll: float | None) -> Step:
        return lambda: measure.drain(side, k, concurrency=CONCURRENCY, poll_delay=poll)

    default = "process, poll 0.5 (arq's default)" if is_arq else f"process, poll {side.default_poll_delay} (default)"
    m = slow_jobs if is_arq else n
    return [
        ("enqueue one at a time", n, None, lambda: measure.enqueue_rate(side, n)),
        ("bulk enqueue", n, None, lambda: measure.bulk_rate(side, n)),
        (f"process, poll {LIKE_FOR_LIKE_POLL_S}", n, fill(n), drain(n, LIKE_FOR_LIKE_POLL_S)),
        (default, m, fill(m), drain(m, None)),
    ]


async def run_profile(cfg: Config, url: str) -> None:
    n = cfg.jobs
    async with open_sides(url) as (admin, ours, arq):
        print("Redis commands and CPU per job (instrumented run)")
        for side in (ours, arq):
            for label, k, setup, step in _steps(side, n, cfg.slow_jobs, side is arq):
                await _counted(admin, label, side, k, setup, step)
        for side in (ours, arq):
            label, k, setup, step = _steps(side, n, cfg.slow_jobs, side is arq)[0]
            await _profiled(admin, label, side, k, setup, step)
            label, k, setup, step = _steps(side, n, cfg.slow_jobs, side is arq)[2]
            await _profiled(admin, label, side, k, setup, step)
