"""OpenTelemetry traces, with the ``otel`` extra (``pip install 'jobqueue[otel]'``).

An enqueue makes a PRODUCER span per job and stores its trace context in the job; the run makes
a CONSUMER span, child of and linked to it, with the messaging attributes, the attempt and the
outcome; the workers' provider calls, store writes and notifications are its children
(``span()``). The spans go wherever the host's OpenTelemetry SDK sends them (OTLP to a Datadog
Agent, say: docs/tracing.md).

This module never imports OpenTelemetry: ``jobqueue._otel`` does, and only once tracing is found
on, on the first enqueue or run. ``JOBQUEUE_TRACING``: ``auto`` (the default) traces when
opentelemetry-api is installed, ``on`` requires it (``ConfigurationError`` otherwise), ``off``
never imports it. Off or absent, an enqueue or a run pays one identity check; installed but with
no tracer provider set by the process (no SDK), one lookup more, and no span is made.
"""

from __future__ import annotations

import importlib
from contextlib import AbstractContextManager, nullcontext
from types import ModuleType
from typing import Any, Literal

from jobqueue.errors import ConfigurationError
from jobqueue.settings import Settings, get_settings

SpanKind = Literal["internal", "client", "producer", "consumer"]

_resolved_for: Settings | None = None
_otel: ModuleType | None = None


def active() -> ModuleType | None:
    """``jobqueue._otel`` when tracing is on for the current settings, else None (cheap)."""
    settings = get_settings()
    if settings is not _resolved_for:
        _resolve(settings)
    return _otel


def recording() -> bool:
    """Whether an enqueue or a run now makes spans: tracing on and a tracer provider set."""
    otel = active()
    return otel is not None and otel.recording()


def _resolve(settings: Settings) -> None:
    global _resolved_for, _otel
    _otel = None
    if settings.tracing != "off":
        try:
            module = importlib.import_module("jobqueue._otel")
        except ImportError as exc:
            if settings.tracing == "on":
                raise ConfigurationError(
                    f"JOBQUEUE_TRACING=on but OpenTelemetry cannot be imported ({exc}): pip install 'jobqueue[otel]'"
                ) from exc
        else:
            _otel = module
    _resolved_for = settings


class _NoSpan:
    """What ``span()`` yields when tracing is off: attributes set on it go nowhere."""

    __slots__ = ()

    def set_attribute(self, key: str, value: Any) -> None:
        pass

    def set_attributes(self, attributes: dict[str, Any]) -> None:
        pass


_NO_SPAN = _NoSpan()


def span(
    name: str, *, kind: SpanKind = "internal", attributes: dict[str, Any] | None = None
) -> AbstractContextManager[Any]:
    """A child span of the current one (a job's run, inside a handler) around a block.

    Yields the span (``set_attribute`` after a call, e.g. token usage); an exception leaving the
    block is recorded on it and marks it an error. With tracing off: a no-op yielding an object
    whose ``set_attribute`` does nothing.
    """
    otel = active()
    made = None if otel is None else otel.child_span(name, kind, attributes)
    return nullcontext(_NO_SPAN) if made is None else made
