"""A job's wait is counted from when it was due: after its delay, its schedule's time or a retry's
backoff, not from its enqueue. JobInfo's ``due_at``/``waited`` and the worker's per-run log line agree."""

from __future__ import annotations

import json
import logging
import re

import jobqueue
from jobqueue import product_embedding_queue as embeddings
from tests.support.waiting import wait_for
from tests.support.workers import behaviour_key, run_burst, settings_for

DELAY_S = 0.5


async def _state_is(handle, state: str) -> bool:
    return await handle.status() == state


def _logged_waits(caplog, job_id: str) -> list[float]:
    """The ``waited=`` of each run of ``job_id`` in the worker's per-run log lines."""
    return [
        float(re.search(r"waited=([\d.]+)s", r.getMessage()).group(1))
        for r in caplog.records
        if r.name == "jobqueue.worker" and r.getMessage().startswith(f"product-embedding {job_id} ")
    ]


async def test_a_delayed_jobs_wait_starts_at_its_due_time_not_its_enqueue(caplog):
    handle = await jobqueue.enqueue_product_embedding("later", delay=DELAY_S)
    delayed = await embeddings.get_job(handle.job_id)
    assert (delayed.due_at - delayed.enqueued_at).total_seconds() == DELAY_S and delayed.waited is None
    await wait_for(lambda: _state_is(handle, "waiting"), what="the job to fall due")
    with caplog.at_level(logging.INFO, logger="jobqueue.worker"):
        await run_burst(settings_for())
    done = await embeddings.get_job(handle.job_id)
    assert done.state == "completed" and done.due_at == delayed.due_at
    since_enqueue = (done.started_at - done.enqueued_at).total_seconds()
    assert done.waited == round(since_enqueue - DELAY_S, 3)
    assert done.to_dict()["waited"] == done.waited
    assert _logged_waits(caplog, handle.job_id) == [done.waited]


async def test_a_job_due_at_once_waits_from_its_enqueue_and_has_no_due_time(caplog):
    handle = await jobqueue.enqueue_product_embedding("now")
    with caplog.at_level(logging.INFO, logger="jobqueue.worker"):
        await run_burst(settings_for())
    done = await embeddings.get_job(handle.job_id)
    assert done.due_at is None
    assert done.waited == (done.started_at - done.enqueued_at).total_seconds()
    assert _logged_waits(caplog, handle.job_id) == [done.waited]


async def test_a_retried_runs_wait_starts_when_its_backoff_ends(redis_client, caplog):
    await redis_client.set(behaviour_key("flaky"), json.dumps({"fail": 1}))
    handle = await jobqueue.enqueue_product_embedding("flaky")
    with caplog.at_level(logging.INFO, logger="jobqueue.worker"):
        await run_burst(settings_for(backoff_base=DELAY_S))
    done = await embeddings.get_job(handle.job_id)
    assert done.state == "completed" and done.attempts_made == 2
    # Due when attempt 1's backoff ended, after its run: the second run's wait is counted from then.
    assert (done.due_at - done.enqueued_at).total_seconds() >= DELAY_S
    assert 0 <= done.waited < (done.started_at - done.enqueued_at).total_seconds() - DELAY_S
    assert _logged_waits(caplog, handle.job_id)[1:] == [done.waited]
