"""Scenario 9, Sentinel failover: a primary, two replicas and three sentinels on loopback ports; a
producer enqueues continuously through the Sentinel URL while two arq worker processes run; the
primary is SIGKILLed mid-run and the sentinels promote a replica.

Each replica's link to the primary lags by ``FAULTS_REPLICATION_LAG_MS`` (default 100 ms: a replica
in another zone, or behind a busy link; on loopback it would be microseconds), so that what
asynchronous replication can lose is there to be measured. The scenario runs both ways:

- ``async`` (``JOBQUEUE_ENQUEUE_REPLICAS=0``): an enqueue returns once the primary has the job.
  Jobs acknowledged within the lag before the kill may be lost; the line says how many were, and
  the test checks that every lost job was acknowledged within that window, none earlier.
- ``replicated`` (``JOBQUEUE_ENQUEUE_REPLICAS=1``): an enqueue returns once a replica has it too.
  No acknowledged job may be lost.

Figures per mode: seconds from the kill until an enqueue succeeds again, jobs acknowledged before
the kill, jobs lost (acknowledged, never run to the end), runs repeated (jobs that ran more than
once), enqueues refused during the switch. Runs are recorded in a file by the workers (the Redis
that fails over cannot be trusted with its own audit). Only the replicated mode's jobs count in
the suite's ``faults: jobs=... lost=...`` line: asynchronous replication's losses are Redis's
documented behaviour, shown on the scenario's line, not a defect of the queue.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections import Counter
from pathlib import Path

import pytest

import jobqueue
from jobqueue import JobQueueError, NotReplicatedError
from jobqueue import product_embedding_queue as embeddings
from jobqueue.settings import get_settings
from tests.faults import figures
from tests.faults.servers import LaggyLink
from tests.faults.workers import JOB_MS_ENV, RUNS_FILE_ENV, worker_env
from tests.support.sentinel import SentinelGroup
from tests.support.waiting import WorkerProcess, wait_for

SCENARIO = 9
SETTINGS = "tests.faults.workers.RecordedSettings"
LAG_S = float(os.environ.get("FAULTS_REPLICATION_LAG_MS", "100")) / 1000
PRODUCERS = 5  # concurrent enqueue loops
PRODUCER_PAUSE_S = 0.05  # each loop's pause between enqueues: about 100 enqueues/s in all
BEFORE_KILL_S = figures.sized(2, 10)
AFTER_RECOVERY_S = figures.sized(1.5, 10)
# A loss counts as the replication lag's only when its job was acknowledged this close to the kill.
LOSS_WINDOW_MARGIN_S = 1.0
MODES = {"async": 0, "replicated": 1}
REDIS_TIMEOUT_S = 2.0


@pytest.mark.parametrize("mode", list(MODES))
async def test_a_killed_primary_fails_over_and_acknowledged_jobs_survive_as_promised(mode, tmp_path, monkeypatch):
    links: list[LaggyLink] = []
    group = SentinelGroup(tmp_path / "group", replicas=2, sentinels=3)
    try:
        links = [await LaggyLink(group.primary.port, LAG_S).start() for _ in group.replicas]
        await asyncio.to_thread(group.start, {i: link.port for i, link in enumerate(links)})
        result = await _run(mode, group, tmp_path / "runs.log", monkeypatch)
    finally:
        await asyncio.to_thread(group.stop)
        for link in links:
            await link.stop()
    acked, lost, early_losses = result["acked"], result["lost"], result["early_losses"]
    figures.report(
        SCENARIO,
        jobs=len(acked) if mode == "replicated" else 0,
        lost=len(lost) if mode == "replicated" else 0,
        lag_ms=round(LAG_S * 1000),
        **{f"{mode}_{name}": value for name, value in result["figures"].items()},
    )
    assert result["raw"] == [], f"errors other than jobqueue's reached the producer: {result['raw'][:3]}"
    assert result["refused"], "no enqueue met the switch"
    # Never a hang: JOBQUEUE_REDIS_TIMEOUT bounds a call, plus the WAIT when replicas are asked for.
    bound = REDIS_TIMEOUT_S + (get_settings().enqueue_replicas_timeout if MODES[mode] else 0)
    assert result["slowest_refusal_s"] <= bound + 0.5, f"an enqueue took {result['slowest_refusal_s']:.2f}s to fail"
    assert all(result["alive"]), "a worker died: " + result["dead_log"]
    if mode == "replicated":
        assert lost == [], f"{len(lost)} acknowledged job(s) lost: {lost[:10]}"
    else:
        assert early_losses == [], f"jobs acknowledged well before the kill were lost: {early_losses[:10]}"


async def _run(mode: str, group: SentinelGroup, runs_file: Path, monkeypatch) -> dict:
    url = group.url()
    monkeypatch.setenv("REDIS_URL", url)
    monkeypatch.setenv("JOBQUEUE_ENQUEUE_REPLICAS", str(MODES[mode]))
    monkeypatch.setenv("JOBQUEUE_REDIS_TIMEOUT", str(REDIS_TIMEOUT_S))
    get_settings.cache_clear()
    env = {
        "REDIS_URL": url,
        RUNS_FILE_ENV: str(runs_file),
        JOB_MS_ENV: "100",
        **worker_env(concurrency=4, keep_completed=100_000, worker_lease=8, timeout=10),
    }
    acked: dict[str, float] = {}  # job id -> monotonic time its enqueue returned
    refused: Counter[str] = Counter()
    refusal_s: list[float] = []  # how long each refused enqueue took to say so
    refused_at: list[float] = []  # monotonic time of each refusal
    raw: list[str] = []
    stop = asyncio.Event()

    async def produce(n: int) -> None:
        i = 0
        while not stop.is_set():
            job = f"{mode}-{n}-{i}"
            began = time.monotonic()
            try:
                handle = await jobqueue.enqueue_product_embedding(job)
                acked[handle.job_id] = time.monotonic()
            except NotReplicatedError:
                refused["not_replicated"] += 1
                refusal_s.append(time.monotonic() - began)
                refused_at.append(time.monotonic())
            except JobQueueError as exc:
                refused[type(exc).__name__] += 1
                refusal_s.append(time.monotonic() - began)
                refused_at.append(time.monotonic())
            except Exception as exc:  # a finding, not a crash of the producer
                raw.append(f"{type(exc).__module__}.{type(exc).__name__}: {exc}")
            i += 1
            await asyncio.sleep(PRODUCER_PAUSE_S)

    workers = [WorkerProcess(SETTINGS, **env).start() for _ in range(2)]
    producers = [asyncio.create_task(produce(n)) for n in range(PRODUCERS)]
    try:
        await workers[0].wait_for(lambda: _workers_registered(2), timeout=30, what="both workers up")
        await asyncio.sleep(BEFORE_KILL_S)  # the run the kill interrupts: the producers keep going
        await workers[0].wait_for(lambda: _ran(runs_file, 20), timeout=30, what="jobs run before the kill")
        killed_at = time.monotonic()
        acked_before_kill = sum(1 for t in acked.values() if t <= killed_at)
        await asyncio.to_thread(group.primary.kill)
        # Enqueues answered by the old primary just before the kill land after ``killed_at`` too:
        # recovery is the first acknowledgement after the first refusal the kill caused.
        first_refusal = await wait_for(
            lambda: _first_ack_after(dict(enumerate(refused_at)), killed_at),
            timeout=60,
            interval=0.05,
            what="an enqueue refused after the kill",
        )
        first_after = await wait_for(
            lambda: _first_ack_after(acked, first_refusal), timeout=60, interval=0.05, what="an enqueue after the kill"
        )
        recovery_s = round(first_after - killed_at, 2)
        await asyncio.sleep(AFTER_RECOVERY_S)  # enqueues and runs on the new primary
        stop.set()
        await asyncio.gather(*producers)
        await workers[0].wait_for(
            lambda: _settled(runs_file, set(acked)), timeout=60, interval=0.2, what="every job still queued to run"
        )
        alive = [w.proc.poll() is None for w in workers]
        dead_log = "".join(w.output()[-2500:] for w, a in zip(workers, alive, strict=True) if not a)
    finally:
        stop.set()
        await asyncio.gather(*producers, return_exceptions=True)
        for w in workers:
            w.stop()
        await jobqueue.close_queues()
    starts, oks = _runs(runs_file)
    lost = sorted(j for j in acked if j.split(":", 1)[1] not in oks)
    window = LAG_S + LOSS_WINDOW_MARGIN_S
    early_losses = [j for j in lost if acked[j] < killed_at - window]
    return {
        "acked": acked,
        "lost": lost,
        "early_losses": early_losses,
        "refused": refused,
        "slowest_refusal_s": max(refusal_s, default=0.0),
        "raw": raw,
        "alive": alive,
        "dead_log": dead_log,
        "figures": {
            "recovery_s": recovery_s,
            "acked_before_kill": acked_before_kill,
            "acked": len(acked),
            "lost": len(lost),
            # how long before the kill the earliest lost job was acknowledged
            "lost_acked_within_s": round(max((killed_at - acked[j] for j in lost), default=0.0), 3),
            "runs_repeated": sum(1 for n in starts.values() if n > 1),
            "refused": sum(refused.values()),
            "not_replicated": refused["not_replicated"],
            "slowest_refusal_s": round(max(refusal_s, default=0.0), 2),
        },
    }


def _runs(path: Path) -> tuple[Counter[str], set[str]]:
    """Starts per product, and the products whose run ended."""
    starts: Counter[str] = Counter()
    oks: set[str] = set()
    if path.exists():
        for line in path.read_text().splitlines():
            kind, product, _pid = line.split(" ")
            if kind == "start":
                starts[product] += 1
            else:
                oks.add(product)
    return starts, oks


async def _workers_registered(n: int) -> bool:
    return len(await embeddings.get_workers()) >= n


async def _ran(path: Path, n: int) -> bool:
    return len(_runs(path)[1]) >= n


async def _first_ack_after(acked: dict[str, float], moment: float) -> float | None:
    return min((t for t in acked.values() if t > moment), default=None)


async def _settled(path: Path, acked: set[str]) -> bool:
    """Every acknowledged job ran to its end, or the new primary has nothing left to run."""
    if {j.split(":", 1)[1] for j in acked} <= _runs(path)[1]:
        return True
    counts = await embeddings.get_job_counts()
    return counts["waiting"] + counts["active"] + counts["delayed"] == 0
