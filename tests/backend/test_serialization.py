"""Job data is JSON everywhere; nothing a worker reads from Redis is unpickled."""

import json
import pickle

import jobqueue
from jobqueue import product_embedding_queue as embeddings
from tests.support.workers import EmbeddingTestSettings, behaviour_key, run_burst, runs, settings_for


async def _all_values(redis_client):
    values = {}
    async for key in redis_client.scan_iter(match="*"):
        kind = (await redis_client.type(key)).decode()
        if kind == "string":
            values[key] = [await redis_client.get(key)]
        elif kind == "hash":
            values[key] = list((await redis_client.hgetall(key)).values())
        elif kind == "list":
            values[key] = await redis_client.lrange(key, 0, -1)
        elif kind == "zset":
            values[key] = [m for m, _ in await redis_client.zrange(key, 0, -1, withscores=True)]
    return values


async def test_nothing_stored_in_redis_is_pickle(redis_client):
    await redis_client.set(behaviour_key("fails"), json.dumps({"permanent": True}))
    await redis_client.set(behaviour_key("retries"), json.dumps({"fail": 1}))
    await jobqueue.enqueue_product_embeddings(["ok-1", "ok-2", "fails", "retries"])
    await jobqueue.enqueue_product_embedding("later", delay=3600)
    await jobqueue.enqueue_reminder_dispatch(
        "s1", "u1", "PUSH", {"title": "t", "body": "b", "data": {"k": [1, 2]}}, "2030-01-01T00:00:00+00:00"
    )
    await run_burst(settings_for(backoff_base=0.05), max_burst_jobs=5)
    values = await _all_values(redis_client)
    assert any(k.startswith(b"arq:job:") for k in values)
    assert any(b":done:" in k for k in values)
    for key, items in values.items():
        for raw in items:
            assert not raw.startswith(b"\x80"), f"{key!r} holds a pickle"
            if key.startswith(b"arq:job:") or b":done:" in key:
                json.loads(raw)


def test_workers_and_enqueue_side_use_the_same_json_serializer():
    from jobqueue.backend._json import dumps_bytes, loads
    from jobqueue.worker._arq import INVALID_JOB_KEY

    assert EmbeddingTestSettings.job_serializer is dumps_bytes
    job = {"t": None, "f": "product_embedding", "a": [{"product_id": "p"}, 2], "k": {}, "et": 1}
    assert EmbeddingTestSettings.job_deserializer(dumps_bytes(job)) == loads(dumps_bytes(job))
    # Anything but JSON is never unpickled or run: it reaches the job function as an invalid job.
    unreadable = EmbeddingTestSettings.job_deserializer(pickle.dumps(job))
    assert INVALID_JOB_KEY in unreadable["a"][0]
    # arq would call the job function with these keyword arguments and drop the job on TypeError.
    with_kwargs = EmbeddingTestSettings.job_deserializer(dumps_bytes({**job, "k": {"evil": 1}}))
    assert INVALID_JOB_KEY in with_kwargs["a"][0]


class _Exploit:
    def __reduce__(self):
        return (print, ("pickle payload executed",))


async def test_a_pickled_job_is_never_executed(redis_client, capfd):
    job = {"t": None, "f": "product_embedding", "a": [_Exploit(), 2], "k": {}, "et": 1}
    await redis_client.set("arq:job:product-embedding:evil", pickle.dumps(job))
    await redis_client.zadd(embeddings.keys.queue, {"product-embedding:evil": -900000000000.875})
    await run_burst(settings_for())
    assert "pickle payload executed" not in capfd.readouterr().out
    assert await runs(redis_client) == []
    # The job fails with a clear error and a record, instead of vanishing.
    assert await redis_client.zcard(embeddings.keys.queue) == 0
    info = await embeddings.get_job("product-embedding:evil")
    assert info.state == "failed" and info.error_type == "InvalidJobError"
    assert "not JSON" in info.error
