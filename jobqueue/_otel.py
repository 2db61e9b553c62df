"""The OpenTelemetry side of ``jobqueue.tracing``: imported only when tracing is on.

Attribute names follow OpenTelemetry's messaging semantic conventions (1.26 and later):
``messaging.system`` is ``jobqueue``. The conventions name the messaging *product* there, not its
storage (Redis is a database to them, ``db.system``), and list no value for job queues, whose
instrumentations each use their own (Sidekiq's is ``sidekiq``, Celery's ``celery``): what a trace
reader needs is the semantics of these spans (queue names, job ids, attempts), which are
jobqueue's, not Redis's. What the conventions do not cover is under ``jobqueue.*``.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Awaitable, Callable
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.trace import Link, SpanKind, Status, StatusCode

from jobqueue.backend._json import dumps

if TYPE_CHECKING:
    from jobqueue.queue.job import JobHandle, PreparedJob
    from jobqueue.queue.queue import Queue
    from jobqueue.worker._state import Outcome, Run

SYSTEM = "jobqueue"
# The key of the arq job JSON that carries the producer's trace context (W3C ``traceparent``...).
CONTEXT_KEY = "tc"

_KINDS = {
    "internal": SpanKind.INTERNAL,
    "client": SpanKind.CLIENT,
    "producer": SpanKind.PRODUCER,
    "consumer": SpanKind.CONSUMER,
}
_tracer: trace.Tracer | None = None
_provider_set = False
_PROVIDER_IN_ENVIRONMENT = "OTEL_PYTHON_TRACER_PROVIDER" in os.environ
_UNKNOWN = object()  # the API's global under another name (another release): ask the API


def recording() -> bool:
    """Whether the process has set a tracer provider (an SDK). Until it has, the API's spans are
    no-ops, and jobqueue makes none: an API installed as another package's dependency (FastAPI's)
    costs an enqueue one attribute read.

    A provider is set once per process, so once seen it is remembered. Until then the API's own
    global is read (``get_tracer_provider`` would look the environment up on every call), unless
    the environment names a provider for the API to load (``OTEL_PYTHON_TRACER_PROVIDER``).
    """
    global _provider_set
    if _provider_set:
        return True
    if not _PROVIDER_IN_ENVIRONMENT and getattr(trace, "_TRACER_PROVIDER", _UNKNOWN) is None:
        return False
    _provider_set = not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)
    return _provider_set


def tracer() -> trace.Tracer:
    global _tracer
    if _tracer is None:
        # A proxy until the host sets its TracerProvider; it follows the provider from then on.
        _tracer = trace.get_tracer("jobqueue")
    return _tracer


def _message(queue: str, job_id: str, operation: str, kind: str) -> dict[str, Any]:
    return {
        "messaging.system": SYSTEM,
        "messaging.destination.name": queue,
        "messaging.message.id": job_id,
        "messaging.operation.type": kind,
        "messaging.operation.name": operation,
    }


# -- enqueue ----------------------------------------------------------------------------------


async def traced_enqueue(
    queue: Queue, jobs: list[PreparedJob], write: Callable[[list[PreparedJob]], Awaitable[list[JobHandle]]]
) -> list[JobHandle]:
    """``write(jobs)`` with a PRODUCER span per job whose context each job carries.

    One job: a ``send <queue>`` span. Several (a bulk enqueue): a ``create <queue>`` span per job
    inside one CLIENT ``send <queue>`` span with the batch's size, as the conventions ask.
    """
    if not recording():
        return await write(jobs)
    t = tracer()
    name = queue.name
    batch = None
    if len(jobs) > 1:
        batch = t.start_span(
            f"send {name}",
            kind=SpanKind.CLIENT,
            attributes={
                "messaging.system": SYSTEM,
                "messaging.destination.name": name,
                "messaging.operation.type": "send",
                "messaging.operation.name": "enqueue",
                "messaging.batch.message_count": len(jobs),
            },
        )
    parent = trace.set_span_in_context(batch) if batch is not None else None
    operation = "create" if batch is not None else "send"
    spans, carried = [], []
    for job in jobs:
        span = t.start_span(
            f"{operation} {name}",
            context=parent,
            kind=SpanKind.PRODUCER,
            attributes={**_message(name, job.job_id, "enqueue", operation), "jobqueue.job.priority": job.priority},
        )
        carrier: dict[str, str] = {}
        propagate.inject(carrier, context=trace.set_span_in_context(span))
        if carrier:
            # Before the closing part the enqueue script adds: a key arq's readers ignore.
            job = dataclasses.replace(job, job_head=f'{job.job_head},"{CONTEXT_KEY}":{dumps(carrier)}')
        spans.append(span)
        carried.append(job)
    try:
        handles = await write(carried)
    except BaseException as exc:
        for span in [*spans, batch]:
            if span is not None:
                _error(span, type(exc).__qualname__, str(exc) or type(exc).__name__, exc)
                span.end()
        raise
    for span, handle in zip(spans, handles, strict=True):
        span.set_attribute("jobqueue.job.created", handle.created)
        if handle.rerun:
            span.set_attribute("jobqueue.job.rerun", True)
        span.end()
    if batch is not None:
        batch.end()
    return handles


# -- a run ------------------------------------------------------------------------------------


@dataclasses.dataclass(slots=True)
class RunSpan:
    span: trace.Span
    token: object


def start_run(queue: str, worker_id: str, run: Run, job: dict[str, Any]) -> RunSpan | None:
    """The CONSUMER span of one run, made current (the handler's task copies it): a child of the
    enqueue's span, and linked to it, when the job carries its context. None without a provider."""
    if not recording():
        return None
    carrier = job.get(CONTEXT_KEY)
    parent = None
    # Redis content is not trusted: only a mapping of strings reaches the propagator.
    if isinstance(carrier, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in carrier.items()):
        parent = propagate.extract(carrier)
    links = []
    if parent is not None:
        producer = trace.get_current_span(parent).get_span_context()
        if producer.is_valid:
            links.append(Link(producer))
    attributes = {
        **_message(queue, run.job_id, "run", "process"),
        "messaging.client.id": worker_id,
        "jobqueue.job.attempt": run.attempt,
        "jobqueue.job.priority": run.priority,
    }
    span = tracer().start_span(
        f"process {queue}", context=parent, kind=SpanKind.CONSUMER, links=links, attributes=attributes
    )
    return RunSpan(span, otel_context.attach(trace.set_span_in_context(span)))


def end_run(run_span: RunSpan, outcome: Outcome | None) -> None:
    """Record the run's outcome on its span and end it. ``None``: the run was handed back (a
    graceful stop), and runs again elsewhere."""
    span = run_span.span
    try:
        otel_context.detach(run_span.token)
    except ValueError:  # detached in another context than it was attached in: nothing to restore
        pass
    if outcome is None:
        span.set_attribute("jobqueue.job.outcome", "handed_back")
    else:
        kind = outcome.kind
        error_type = outcome.record.get("error_type") if kind == "failed" else outcome.error_type
        label = {"retry": "retrying", "handback": "handed_back"}.get(kind, kind)
        if error_type == "JobCancelled":
            label = "cancelled"
        span.set_attribute("jobqueue.job.outcome", label)
        if outcome.code == -1:
            span.set_attribute("jobqueue.job.stale", True)  # the lease had expired: nothing recorded
        if kind == "failed":
            _error(span, error_type or "Error", outcome.record.get("error") or "")
        elif kind == "retry":
            _error(span, error_type or "Error", outcome.error)
            span.set_attribute("jobqueue.job.retry_delay_ms", outcome.delay_ms)
    span.end()


def _error(span: trace.Span, error_type: str, text: str, exc: BaseException | None = None) -> None:
    span.set_attribute("error.type", error_type)
    if exc is not None:
        span.record_exception(exc)
    span.set_status(Status(StatusCode.ERROR, text))


# -- child spans ------------------------------------------------------------------------------


def child_span(name: str, kind: str, attributes: dict[str, Any] | None) -> AbstractContextManager[Any] | None:
    """The span's context manager, or None without a provider (``tracing.span`` then makes none)."""
    if not recording():
        return None
    return tracer().start_as_current_span(name, kind=_KINDS[kind], attributes=attributes)
