"""JOBQUEUE_ENQUEUE_REPLICAS: an enqueue returns once that many replicas have its write (WAIT on
the same connection, in the same pipeline), raises NotReplicatedError when they do not confirm in
time (the job is written on the primary; enqueueing it again is safe), and costs nothing when 0."""

from __future__ import annotations

import signal
import time

import pytest

import jobqueue
from jobqueue import ConfigurationError, NotReplicatedError, RedisUnavailableError
from jobqueue import product_embedding_queue as embeddings
from jobqueue.settings import get_settings
from tests.support.sentinel import RedisNode


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """A primary and one replica of it."""
    directory = tmp_path_factory.mktemp("replicated")
    primary, replica = RedisNode(directory / "primary"), RedisNode(directory / "replica")
    try:
        primary.start()
        replica.start(replicaof=primary.port)
        deadline = time.monotonic() + 20
        while primary.admin().info("replication").get("slave0", {}).get("state") != "online":
            assert time.monotonic() < deadline, "the replica did not come in sync: " + replica.log()[-2000:]
            time.sleep(0.05)
        yield primary, replica
    finally:
        replica.stop()
        primary.stop()


@pytest.fixture
def on_pair(pair, monkeypatch):
    primary, replica = pair
    primary.admin().flushdb()
    monkeypatch.setenv("REDIS_URL", f"redis://127.0.0.1:{primary.port}/0")
    monkeypatch.setenv("JOBQUEUE_ENQUEUE_REPLICAS_TIMEOUT", "0.5")
    get_settings.cache_clear()
    return primary, replica


def _use_replicas(monkeypatch, n: int) -> None:
    monkeypatch.setenv("JOBQUEUE_ENQUEUE_REPLICAS", str(n))
    get_settings.cache_clear()


def _waits(node) -> int:
    return int(node.admin().info("commandstats").get("cmdstat_wait", {}).get("calls", 0))


async def test_an_acknowledged_enqueue_is_already_on_the_replica(on_pair, monkeypatch):
    _, replica = on_pair
    _use_replicas(monkeypatch, 1)
    one = await jobqueue.enqueue_product_embedding("r1")
    many = await jobqueue.enqueue_product_embeddings([f"b{i}" for i in range(1500)])  # two script chunks
    both = await jobqueue.enqueue_product_processing("pp")
    assert one.created and all(h.created for h in many) and both.embedding_job.created
    # Read from the replica right after the calls returned: nothing to wait for.
    assert replica.admin().exists(embeddings.keys.arq_job("product-embedding:r1")) == 1
    assert replica.admin().exists(embeddings.keys.arq_job("product-embedding:b1499")) == 1
    assert replica.admin().exists(embeddings.keys.arq_job(both.enrichment_job.job_id)) == 1


async def test_too_few_replicas_in_time_raise_not_replicated_and_a_retry_is_safe(on_pair, monkeypatch):
    primary, replica = on_pair
    _use_replicas(monkeypatch, 1)
    replica.proc.send_signal(signal.SIGSTOP)  # connected, silent: it confirms nothing
    try:
        with pytest.raises(NotReplicatedError) as info:
            await jobqueue.enqueue_product_embedding("late")
    finally:
        replica.proc.send_signal(signal.SIGCONT)
    error = info.value
    assert isinstance(error, RedisUnavailableError)  # a caller's existing handling still applies
    assert (error.wanted, error.acknowledged) == (1, 0)
    assert "written on the primary" in str(error) and f"127.0.0.1:{primary.port}" in str(error)
    assert [h.job_id for h in error.handles] == ["product-embedding:late"] and error.handles[0].created
    assert await embeddings.get_job_state("product-embedding:late") == "waiting"  # written, as it says
    again = await jobqueue.enqueue_product_embedding("late")  # the retry: deduplicated, and confirmed
    assert again.created is False
    assert replica.admin().exists(embeddings.keys.arq_job("product-embedding:late")) == 1


async def test_asking_for_more_replicas_than_exist_fails_every_enqueue_in_bounded_time(on_pair, monkeypatch):
    _use_replicas(monkeypatch, 2)
    with pytest.raises(NotReplicatedError, match="1 of 2 replica"):
        await jobqueue.enqueue_product_embedding("two")


async def test_with_the_setting_at_zero_an_enqueue_sends_no_wait(on_pair, monkeypatch):
    primary, _ = on_pair
    _use_replicas(monkeypatch, 0)
    before = _waits(primary)
    await jobqueue.enqueue_product_embedding("plain")
    await jobqueue.enqueue_product_embeddings(["x", "y"])
    assert _waits(primary) == before
    _use_replicas(monkeypatch, 1)
    await jobqueue.enqueue_product_embedding("waited")
    assert _waits(primary) == before + 1


@pytest.mark.parametrize(
    ("variable", "value"), [("JOBQUEUE_ENQUEUE_REPLICAS", "-1"), ("JOBQUEUE_ENQUEUE_REPLICAS_TIMEOUT", "0")]
)
async def test_bad_replica_settings_are_refused_before_anything_is_written(monkeypatch, variable, value):
    monkeypatch.setenv(variable, value)
    get_settings.cache_clear()
    with pytest.raises(ConfigurationError, match=variable):
        await jobqueue.enqueue_product_embedding("p1")
