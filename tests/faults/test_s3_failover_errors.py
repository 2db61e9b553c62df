"""Scenario 3, failover-shaped errors: the Redis under running workers answers READONLY (it
became a replica), BUSY (a long script) and OOM (out of memory) for a couple of seconds each.
Enqueues fail with a library error, never a raw redis one; workers retry, never die with a raw
traceback, and no job is lost."""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from collections.abc import Callable

import pytest
import redis as sync_redis

import jobqueue
from jobqueue import JobQueueError
from jobqueue import product_embedding_queue as embeddings
from tests.faults import figures
from tests.faults.audit import records
from tests.faults.workers import JOB_MS_ENV, worker_env
from tests.support.waiting import WorkerProcess, free_port

SCENARIO = 3
SETTINGS = "tests.faults.workers.StormSettings"
FAULT_S = 2.0


def readonly(server) -> Callable[[], None]:
    """The server becomes a replica of a master that is gone: it keeps its data, refuses writes."""
    admin = server.admin()
    admin.execute_command("REPLICAOF", "127.0.0.1", str(free_port()))
    return lambda: admin.execute_command("REPLICAOF", "NO", "ONE")


def busy(server) -> Callable[[], None]:
    """A script that never ends: every other client gets BUSY until it is killed."""
    admin = server.admin()
    admin.config_set("busy-reply-threshold", 100)
    runner = server.admin()
    thread = threading.Thread(target=_run_forever_script, args=(runner,), daemon=True)
    thread.start()

    def end() -> None:
        deadline = time.monotonic() + 10
        while thread.is_alive() and time.monotonic() < deadline:
            try:
                admin.script_kill()
            except sync_redis.ResponseError:
                pass  # not running yet
            thread.join(0.05)

    return end


def _run_forever_script(client) -> None:
    try:
        client.eval("while true do end", 0)
    except sync_redis.ResponseError:
        pass  # killed


def oom(server) -> Callable[[], None]:
    """Memory is full under noeviction: every write is refused with OOM."""
    admin = server.admin()
    admin.config_set("maxmemory", 1)
    return lambda: admin.config_set("maxmemory", 0)


FAULTS = {"readonly": readonly, "busy": busy, "oom": oom}


@pytest.mark.parametrize("fault", list(FAULTS))
async def test_workers_ride_out_failover_shaped_errors_and_lose_no_job(fault, own_valkey):
    server = own_valkey()
    env = {JOB_MS_ENV: "20", **worker_env(concurrency=5, keep_completed=100_000, worker_lease=5, timeout=10)}
    accepted: list[str] = []
    errors: Counter[str] = Counter()
    raw: list[str] = []
    stop = asyncio.Event()

    async def produce() -> None:
        i = 0
        while not stop.is_set():
            try:
                accepted.append((await jobqueue.enqueue_product_embedding(f"{fault}-{i}")).job_id)
            except JobQueueError as exc:
                errors[type(exc).__name__] += 1
            except Exception as exc:
                raw.append(f"{type(exc).__module__}.{type(exc).__name__}: {exc}")
            i += 1
            await asyncio.sleep(0.01)

    workers = [WorkerProcess(SETTINGS, **env).start() for _ in range(2)]
    producer = asyncio.create_task(produce())
    try:
        await workers[0].wait_for(lambda: _completed_at_least(20), timeout=30, what="work before the fault")
        await workers[1].wait_for(lambda: _workers_registered(server, 2), timeout=30, what="both workers up")
        end = await asyncio.to_thread(FAULTS[fault], server)
        await asyncio.sleep(FAULT_S)
        await asyncio.to_thread(end)
        more = len(accepted) + 20
        await workers[0].wait_for(lambda: _true(len(accepted) >= more), timeout=30, what="enqueues after the fault")
        stop.set()
        await producer
        n = len(accepted)
        try:
            # Dead workers complete nothing: stop waiting when none is left.
            await workers[0].wait_for(lambda: _done_or_all_dead(n, workers), timeout=30, what="every accepted job")
        except AssertionError as exc:
            timeout = str(exc).splitlines()[0]
        else:
            timeout = None
        alive = [w.proc.poll() is None for w in workers]
        logs = [w.output() for w in workers]
    finally:
        stop.set()
        await asyncio.gather(producer, return_exceptions=True)
        for w in workers:
            w.stop()
    done = await records(accepted)
    lost = [j for j in accepted if done.get(j, {}).get("state") != "completed"]
    figures.report(
        SCENARIO,
        jobs=len(accepted),
        lost=len(lost),
        **{
            f"{fault}_accepted": len(accepted),
            f"{fault}_refused": sum(errors.values()) + len(raw),
            f"{fault}_raw_errors": len(raw),
            f"{fault}_workers_alive": sum(alive),
            f"{fault}_lost": len(lost),
        },
    )
    assert raw == [], f"raw redis errors reached the caller: {raw[:3]}"
    assert errors, "no enqueue met the fault"
    assert all(alive), "a worker died: " + "".join(log[-2500:] for log, a in zip(logs, alive, strict=True) if not a)
    states = {j: await _describe(j) for j in lost[:5]}
    log_lines = [line for log in logs for line in log.splitlines() if any(j.split(":")[1] in line for j in lost[:5])]
    assert lost == [] and timeout is None, f"{len(lost)} job(s) never completed: {states} {log_lines[-20:]}"


@pytest.mark.parametrize("fault", list(FAULTS))
async def test_a_worker_started_during_the_fault_waits_it_out(fault, own_valkey):
    server = own_valkey()
    handle = await jobqueue.enqueue_product_embedding(f"{fault}-late")
    end = await asyncio.to_thread(FAULTS[fault], server)
    with WorkerProcess(SETTINGS, **worker_env(worker_lease=5)) as worker:
        try:
            await asyncio.sleep(FAULT_S)  # the fault lasts while the worker starts
        finally:
            await asyncio.to_thread(end)
        alive = worker.proc.poll() is None
        if alive:
            await worker.wait_for(lambda: _job_completed(handle), timeout=30, what="the job after the fault")
        log = worker.output()
    figures.report(SCENARIO, **{f"{fault}_worker_started_during_fault_alive": int(alive)})
    assert alive, log[-2500:]


async def _job_completed(handle):
    return await handle.status() == "completed"


async def _workers_registered(server, n):
    return server.admin().zcard(embeddings.keys.workers) >= n


async def _describe(job_id):
    info = await embeddings.get_job(job_id)
    return info.to_dict() if info else "gone"


async def _done_or_all_dead(n, workers):
    return all(w.proc.poll() is not None for w in workers) or await _completed_at_least(n)


async def _completed_at_least(n):
    return (await embeddings.get_job_counts())["completed"] >= n


async def _true(value):
    return value
