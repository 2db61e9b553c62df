"""OpenTelemetry's SDK with an in-memory exporter, set as the process's tracer provider once.

OpenTelemetry lets a process set its global provider only once, so every test that checks spans
shares this exporter and clears it first (``finished_spans``).
"""

from __future__ import annotations

from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

EXPORTER = InMemorySpanExporter()
_installed = False


def install() -> InMemorySpanExporter:
    """The shared exporter, cleared, its provider set as the global one (once per process)."""
    global _installed
    if not _installed:
        provider = trace.get_tracer_provider()
        if not isinstance(provider, TracerProvider):
            provider = TracerProvider()
            trace.set_tracer_provider(provider)
        provider.add_span_processor(SimpleSpanProcessor(EXPORTER))
        _installed = True
    EXPORTER.clear()
    return EXPORTER


def named(name: str) -> list[ReadableSpan]:
    """The finished spans called ``name``, in the order they ended."""
    return [s for s in EXPORTER.get_finished_spans() if s.name == name]
