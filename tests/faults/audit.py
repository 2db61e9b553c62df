"""Reading a scenario's outcome back from Redis: records of every job, and whether each run of
each job is explained (by a crash of its worker, or by a failure the job was told to have)."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from jobqueue import product_embedding_queue as embeddings
from jobqueue.backend._json import loads
from jobqueue.backend.connection import get_redis


async def records(job_ids: list[str]) -> dict[str, dict[str, Any]]:
    """The finished records (``done`` keys) of these jobs; a job without one is absent."""
    redis = get_redis()
    found: dict[str, dict[str, Any]] = {}
    for i in range(0, len(job_ids), 1000):
        page = job_ids[i : i + 1000]
        values = await redis.mget([embeddings.keys.done(j) for j in page])
        found |= {j: loads(v) for j, v in zip(page, values, strict=True) if v is not None}
    return found


@dataclass
class RunAudit:
    runs: int = 0
    extra_runs: int = 0  # runs beyond the one that completed each job
    crash_runs: int = 0  # runs that a killed worker never finished
    unexplained: list[str] = field(default_factory=list)


def audit_runs(
    events: list[tuple[str, str, int, int, float]],
    *,
    killed: set[int],
    fail_once: set[str],
    attempts: dict[str, int],
) -> RunAudit:
    """Every run of a product must be explained: the last one completed it; each earlier one
    either failed on purpose (once, for ``fail_once`` products) or ran on a worker that was
    killed. No try number may run twice, and no job may run more often than its attempts say."""
    starts: dict[str, dict[int, int]] = defaultdict(dict)
    ends: dict[tuple[str, int], str] = {}
    audit = RunAudit()
    for kind, product, job_try, pid, _at in events:
        if kind == "start":
            if job_try in starts[product]:
                audit.unexplained.append(f"{product}: try {job_try} started twice")
            starts[product][job_try] = pid
            audit.runs += 1
        else:
            ends[(product, job_try)] = kind
    for product, tries in starts.items():
        order = sorted(tries)
        last = order[-1]
        if ends.get((product, last)) != "ok":
            audit.unexplained.append(f"{product}: last run (try {last}) ended {ends.get((product, last))}")
        failures = 0
        for job_try in order[:-1]:
            audit.extra_runs += 1
            end = ends.get((product, job_try))
            if end == "fail" and product in fail_once:
                failures += 1
            elif tries[job_try] in killed:
                audit.crash_runs += 1
            else:
                audit.unexplained.append(f"{product}: try {job_try} ended {end} on live pid {tries[job_try]}")
        if failures > 1:
            audit.unexplained.append(f"{product}: failed {failures} times, told to fail once")
        made = attempts.get(product)
        if made is not None and len(order) > made:
            audit.unexplained.append(f"{product}: {len(order)} runs but attempts_made {made}")
    return audit
