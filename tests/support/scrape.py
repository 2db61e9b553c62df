"""Reading Prometheus text pages in tests."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

Page = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def samples(text: str) -> Page:
    """Every sample of a Prometheus text page, keyed by (name, sorted labels)."""
    out: Page = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(page: Page, name: str, **labels: str) -> float | None:
    return page.get((name, tuple(sorted(labels.items()))))
