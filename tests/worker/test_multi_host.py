"""Workers on several hosts: three network namespaces the test makes, each with an ``arq`` worker
process that reaches one Redis over its own link. Every job runs exactly once across them, pause
holds for all of them and the counts stay exact; then one host's link is cut while it runs jobs:
they return once their lease expires and complete on the other hosts, none lost, and when the link
comes back the cut-off worker's late outcomes are refused (FINISH with a stale token) and change
nothing."""

from __future__ import annotations

import collections
import json
import subprocess
import sys
from collections.abc import Iterator

import pytest

import jobqueue
from jobqueue import product_embedding_queue as embeddings
from jobqueue.backend.connection import get_redis
from jobqueue.queue.events import parse_event
from jobqueue.settings import get_settings
from tests.support.netns import Hosts, cannot_make_namespaces
from tests.support.redis_process import RedisProcess
from tests.support.waiting import ROOT, WorkerProcess, wait_for
from tests.support.workers import RUNS_KEY, behaviour_key, counts, release_key, runs

SETTINGS = "tests.support.workers.EmbeddingTestSettings"  # worker_lease 1 s, a tick every 50 ms
PER_WORKER = 2


class NamespacedWorker(WorkerProcess):
    """``ip netns exec <namespace> python -m arq <settings>``: a worker on another host."""

    def __init__(self, namespace: str, settings: str, **env: str) -> None:
        super().__init__(settings, **env)
        self.namespace = namespace

    def start(self) -> NamespacedWorker:
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", self.namespace, sys.executable, "-m", "arq", self.settings],
            env=self.env,
            cwd=ROOT,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        return self


@pytest.fixture
def hosts() -> Iterator[Hosts]:
    reason = cannot_make_namespaces()
    if reason:
        pytest.skip(reason)
    made = Hosts(3)
    try:
        yield made.make()
    finally:
        made.remove()


@pytest.fixture
def server(hosts: Hosts, monkeypatch: pytest.MonkeyPatch) -> Iterator[RedisProcess]:
    """One Redis, bound to loopback (for the test) and to every host's link."""
    redis_server = RedisProcess(bind=" ".join(["127.0.0.1", *(h.gateway for h in hosts.hosts)]))
    redis_server.start()
    monkeypatch.setenv("REDIS_URL", f"redis://127.0.0.1:{redis_server.port}/0")
    get_settings.cache_clear()
    try:
        yield redis_server
    finally:
        redis_server.stop()


async def worker_of_each_host(hosts: Hosts) -> dict[str, str]:
    """Worker id -> the namespace its process runs in, once all three have a heartbeat."""

    async def all_up() -> dict[str, str] | None:
        found = {}
        for w in await embeddings.get_workers():
            for host in hosts.hosts:
                if w["pid"] in host.pids():
                    found[w["id"]] = host.namespace
        return found if len(set(found.values())) == len(hosts.hosts) else None

    return await wait_for(all_up, timeout=20, what="a worker on every host")


async def test_workers_on_three_hosts_run_each_job_once_and_survive_a_cut_link(hosts, server):
    redis = server.client()
    workers = [
        NamespacedWorker(
            host.namespace,
            SETTINGS,
            REDIS_URL=f"redis://{host.gateway}:{server.port}/0",
            JOBQUEUE_TEST_CONCURRENCY=str(PER_WORKER),
            JOBQUEUE_REDIS_TIMEOUT="2",
        ).start()
        for host in hosts.hosts
    ]
    try:
        namespace_of = await worker_of_each_host(hosts)

        # Pause holds on every host: jobs enqueued meanwhile wait until resume, then run once each.
        await embeddings.pause()
        ids = [f"p{i}" for i in range(24)]
        await jobqueue.enqueue_product_embeddings(ids)
        started = int(redis.time()[0])

        async def every_worker_looked_since() -> bool:
            # A worker claims at least every second; two beats after that, none may have started one.
            beats = [w["last_heartbeat"] for w in await embeddings.get_workers()]
            return len(beats) == 3 and min(beats) >= (started + 2) * 1000

        await wait_for(every_worker_looked_since, timeout=10, what="every worker to poll while paused")
        assert await embeddings.get_job_counts() == counts(paused=24)
        assert redis.llen(RUNS_KEY) == 0
        await embeddings.resume()
        await workers[0].wait_for(_completed(24), timeout=15, what="the 24 jobs to complete")
        done = await runs(get_redis())
        assert sorted(r["product_id"] for r in done) == sorted(ids)  # each exactly once
        assert len({r["pid"] for r in done}) >= 2, "the jobs ran on more than one host"

        # Cut a host off while each worker runs two blocked jobs.
        blocked = [f"cut{i}" for i in range(3 * PER_WORKER)]
        for pid in blocked:
            redis.set(behaviour_key(pid), json.dumps({"block": True}))
        await jobqueue.enqueue_product_embeddings(blocked)

        async def all_running() -> bool:
            alive = await embeddings.get_workers()
            return len(alive) == 3 and all(w["running"] == PER_WORKER for w in alive)

        await wait_for(all_running, timeout=10, what="every worker to run two blocked jobs")
        cut_host = hosts.hosts[2]
        cut_id = next(w for w, ns in namespace_of.items() if ns == cut_host.namespace)
        cut_pids = cut_host.pids()
        on_cut_host = {r["product_id"] for r in await runs(get_redis()) if r["pid"] in cut_pids}
        on_cut_host &= set(blocked)
        assert len(on_cut_host) == PER_WORKER
        cut_host.cut()
        try:
            for pid in blocked:
                redis.set(release_key(pid), 1)
            # The cut-off host's runs lose their lease; the other hosts run its jobs and complete them.
            await workers[0].wait_for(_completed(24 + len(blocked)), timeout=15, what="every blocked job to complete")
            assert await embeddings.get_job_counts() == counts(completed=24 + len(blocked))
        finally:
            cut_host.restore()

        # Back on the network, the cut-off worker finishes its two old runs: both are refused.
        async def late_outcomes_refused() -> bool:
            alive = {w["id"]: w for w in await embeddings.get_workers()}
            return cut_id in alive and alive[cut_id]["stale"] == PER_WORKER

        await workers[2].wait_for(late_outcomes_refused, timeout=20, what="the cut-off worker's late outcomes")
        assert await embeddings.get_job_counts() == counts(completed=24 + len(blocked))
        events = [parse_event(i, f) for i, f in redis.xrange(embeddings.keys.events)]
        completions = collections.Counter(e.job_id for e in events if e.name == "completed")
        assert all(n == 1 for n in completions.values()) and len(completions) == 24 + len(blocked)
        stalled = {e.job_id for e in events if e.name == "stalled"}
        assert stalled == {f"product-embedding:{p}" for p in on_cut_host}
        for pid in on_cut_host:
            job = await embeddings.get_job(f"product-embedding:{pid}")
            assert job is not None and job.state == "completed"
    finally:
        for worker in workers:
            worker.stop()
        redis.close()


def _completed(n: int):
    async def check() -> bool:
        return (await embeddings.get_job_counts())["completed"] >= n

    return check
