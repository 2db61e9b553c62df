"""OpenTelemetry traces: a producer span per enqueue, a consumer span per run, child spans inside.

Spans are read from OpenTelemetry's in-memory exporter; the jobs run on a real worker against the
real Redis. Without OpenTelemetry (or with ``JOBQUEUE_TRACING=off``) nothing of it is imported.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.trace import SpanKind, StatusCode

import jobqueue
from jobqueue import product_embedding_queue as embeddings
from jobqueue import tracing
from jobqueue.errors import ConfigurationError
from jobqueue.worker import build_worker_settings
from tests.support import tracing as otel
from tests.support.waiting import ROOT, wait_for
from tests.support.workers import RunningWorker, behaviour_key, settings_for
from tests.support.workers import test_options as options_for

QUEUE = "product-embedding"


@pytest.fixture
def exporter():
    return otel.install()


async def _spans(name: str, count: int) -> list[Any]:
    async def ended() -> list[Any] | None:
        spans = otel.named(name)
        return spans if len(spans) >= count else None

    return await wait_for(ended, timeout=10, what=f"{count} finished span(s) {name!r}")


async def test_enqueue_span_is_the_parent_of_the_run_span_and_linked_to_it(exporter):
    request_tracer = trace.get_tracer("tests")
    with request_tracer.start_as_current_span("POST /products") as request:
        handle = await jobqueue.enqueue_product_embedding("t-ok")
    async with RunningWorker(settings_for()):
        await handle.result(timeout=10)
        (run,) = await _spans(f"process {QUEUE}", 1)
    (send,) = otel.named(f"send {QUEUE}")

    assert send.kind is SpanKind.PRODUCER
    assert send.parent.span_id == request.get_span_context().span_id  # inside the API's request
    assert send.attributes["messaging.system"] == "jobqueue"
    assert send.attributes["messaging.destination.name"] == QUEUE
    assert send.attributes["messaging.message.id"] == "product-embedding:t-ok"
    assert send.attributes["messaging.operation.type"] == "send"
    assert send.attributes["jobqueue.job.created"] is True

    assert run.kind is SpanKind.CONSUMER
    assert run.context.trace_id == send.context.trace_id
    assert run.parent.span_id == send.context.span_id
    assert [link.context.span_id for link in run.links] == [send.context.span_id]
    assert run.attributes["messaging.system"] == "jobqueue"
    assert run.attributes["messaging.destination.name"] == QUEUE
    assert run.attributes["messaging.message.id"] == "product-embedding:t-ok"
    assert run.attributes["messaging.operation.type"] == "process"
    assert run.attributes["jobqueue.job.attempt"] == 1
    assert run.attributes["jobqueue.job.outcome"] == "completed"
    assert run.status.status_code is StatusCode.UNSET


async def test_a_retried_job_has_one_run_span_per_attempt_under_its_enqueue(exporter, redis_client):
    await redis_client.set(behaviour_key("t-retry"), json.dumps({"fail": 1}))
    handle = await jobqueue.enqueue_product_embedding("t-retry")
    async with RunningWorker(settings_for()):
        await handle.result(timeout=10)
        first, second = await _spans(f"process {QUEUE}", 2)
    (send,) = otel.named(f"send {QUEUE}")

    assert [s.attributes["jobqueue.job.attempt"] for s in (first, second)] == [1, 2]
    assert first.attributes["jobqueue.job.outcome"] == "retrying"
    assert first.attributes["error.type"] == "RuntimeError"
    assert first.status.status_code is StatusCode.ERROR
    assert first.status.description == "RuntimeError: transient failure 1"
    assert second.attributes["jobqueue.job.outcome"] == "completed"
    assert second.status.status_code is StatusCode.UNSET
    assert {s.parent.span_id for s in (first, second)} == {send.context.span_id}


async def test_a_failed_job_ends_its_run_span_with_an_error_status(exporter, redis_client):
    await redis_client.set(behaviour_key("t-fail"), json.dumps({"permanent": True}))
    handle = await jobqueue.enqueue_product_embedding("t-fail")
    async with RunningWorker(settings_for()):
        with pytest.raises(jobqueue.JobFailedError):
            await handle.result(timeout=10)
        (run,) = await _spans(f"process {QUEUE}", 1)
    assert run.attributes["jobqueue.job.outcome"] == "failed"
    assert run.attributes["error.type"] == "PermanentJobError"
    assert run.status.status_code is StatusCode.ERROR
    assert run.status.description == "PermanentJobError: product t-fail cannot be embedded"


async def test_a_cancelled_job_reads_cancelled(exporter, redis_client):
    await redis_client.set(behaviour_key("t-cancel"), json.dumps({"block": True}))
    handle = await jobqueue.enqueue_product_embedding("t-cancel")
    async with RunningWorker(settings_for()):
        await wait_for(lambda: _state_is(handle.job_id, "active"), what="the job to start")
        await embeddings.cancel_job(handle.job_id, reason="budget")
        (run,) = await _spans(f"process {QUEUE}", 1)
    assert run.attributes["jobqueue.job.outcome"] == "cancelled"
    assert run.attributes["error.type"] == "JobCancelled"
    assert run.status.status_code is StatusCode.ERROR


async def _state_is(job_id: str, state: str) -> bool:
    return await embeddings.get_job_state(job_id) == state


async def test_spans_made_inside_a_handler_are_children_of_its_run(exporter):
    async def handler(ctx: dict[str, Any], payload: Any) -> dict[str, str]:
        with tracing.span("embeddings test-model", kind="client", attributes={"gen_ai.request.model": "m"}) as span:
            span.set_attribute("gen_ai.usage.input_tokens", 7)
        return {"status": "processed", "product_id": payload.product_id, "text_hash": "h"}

    settings = build_worker_settings(QUEUE, handler, options=options_for())
    handle = await jobqueue.enqueue_product_embedding("t-child")
    async with RunningWorker(settings):
        await handle.result(timeout=10)
        (run,) = await _spans(f"process {QUEUE}", 1)
    (call,) = otel.named("embeddings test-model")
    assert call.kind is SpanKind.CLIENT
    assert call.parent.span_id == run.context.span_id
    assert call.attributes["gen_ai.usage.input_tokens"] == 7


async def test_a_deduplicated_enqueue_says_so_on_its_span(exporter):
    await jobqueue.enqueue_product_embedding("t-dup")
    await jobqueue.enqueue_product_embedding("t-dup")
    first, second = otel.named(f"send {QUEUE}")
    assert first.attributes["jobqueue.job.created"] is True
    assert second.attributes["jobqueue.job.created"] is False


async def test_a_bulk_enqueue_makes_one_send_span_and_a_create_span_per_job(exporter):
    handles = await jobqueue.enqueue_product_embeddings(["b1", "b2", "b3"])
    (send,) = otel.named(f"send {QUEUE}")
    creates = otel.named(f"create {QUEUE}")
    assert send.kind is SpanKind.CLIENT
    assert send.attributes["messaging.batch.message_count"] == 3
    assert [c.attributes["messaging.message.id"] for c in creates] == [h.job_id for h in handles]
    assert all(c.kind is SpanKind.PRODUCER and c.parent.span_id == send.context.span_id for c in creates)
    async with RunningWorker(settings_for(concurrency=3)):
        runs = await _spans(f"process {QUEUE}", 3)
    by_job = {r.attributes["messaging.message.id"]: r for r in runs}
    for create in creates:
        assert by_job[create.attributes["messaging.message.id"]].parent.span_id == create.context.span_id


async def test_tracing_on_without_opentelemetry_is_a_configuration_error(monkeypatch):
    monkeypatch.setenv("JOBQUEUE_TRACING", "on")
    monkeypatch.setitem(sys.modules, "jobqueue._otel", None)  # as if OpenTelemetry were not installed
    jobqueue.get_settings.cache_clear()
    with pytest.raises(ConfigurationError, match=r"jobqueue\[otel\]"):
        await jobqueue.enqueue_product_embedding("t-on")


# Enqueues a job and runs it with a burst worker, then prints the OpenTelemetry modules loaded and
# whether the job carried a trace context. The process sets no tracer provider (no SDK).
_PROBE = """
import asyncio, json, sys
if sys.argv[1] == "hidden":
    sys.modules["opentelemetry"] = None  # as if the extra were not installed: import fails
import jobqueue
from jobqueue.backend.connection import get_redis
from tests.support.workers import run_burst, settings_for

async def main():
    handle = await jobqueue.enqueue_product_embedding("probe")
    job = json.loads(await get_redis().get("arq:job:" + handle.job_id))
    worker = await run_burst(settings_for())
    assert worker.ctx["jobqueue"].counters["completed"] == 1, worker.ctx["jobqueue"].counters
    await jobqueue.close_queues()
    return "tc" in job

carried = asyncio.run(main())
modules = sorted(m for m in sys.modules if m.split(".")[0] == "opentelemetry" and sys.modules[m] is not None)
print(json.dumps({"modules": modules, "carried": carried}))
"""


def _probe(mode: str, redis_url: str, tracing_setting: str) -> dict[str, Any]:
    env = {**os.environ, "REDIS_URL": redis_url, "JOBQUEUE_TRACING": tracing_setting, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, mode], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


@pytest.mark.parametrize(("mode", "setting"), [("hidden", "auto"), ("installed", "off")])
def test_without_the_extra_or_turned_off_nothing_of_opentelemetry_is_imported(redis_url, mode, setting):
    assert _probe(mode, redis_url, setting) == {"modules": [], "carried": False}


def test_with_the_api_but_no_tracer_provider_no_span_is_made(redis_url):
    # The probe can see the modules: with OpenTelemetry present and the default, it lists them;
    # with no provider set (no SDK), the job carries no context, as no span was made.
    probed = _probe("installed", redis_url, "auto")
    assert "opentelemetry.trace" in probed["modules"]
    assert probed["carried"] is False


@pytest.mark.parametrize("context", ['{"traceparent":123}', '"not an object"', '{"traceparent":"00-zz-zz-01"}'])
async def test_a_job_whose_stored_trace_context_is_garbage_runs_in_a_trace_of_its_own(exporter, redis_client, context):
    handle = await jobqueue.enqueue_product_embedding("t-garbage")
    key = f"arq:job:{handle.job_id}"
    job = json.loads(await redis_client.get(key))
    job["tc"] = json.loads(context)  # in place of the context the enqueue stored
    await redis_client.set(key, json.dumps(job))
    async with RunningWorker(settings_for()):
        await handle.result(timeout=10)
        (run,) = await _spans(f"process {QUEUE}", 1)
    assert run.parent is None and list(run.links) == []
    assert run.attributes["jobqueue.job.outcome"] == "completed"
