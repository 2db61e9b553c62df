"""The Core API's workers: one arq settings class per queue.

    arq workers.EmbeddingSettings     # product-embedding
    arq workers.EnrichmentSettings    # product-enrichment
    arq workers.TasteProfileSettings  # taste-profile-embedding
    arq workers.CollectionsSettings   # curated-collections, with the daily cron job
    arq workers.RemindersSettings     # reminder-dispatch

Each class is built on first access (PEP 562), so importing this package reads no settings.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "CollectionsSettings",
    "EmbeddingSettings",
    "EnrichmentSettings",
    "RemindersSettings",
    "TasteProfileSettings",
]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from workers.settings import BUILDERS

        settings = BUILDERS[name]()
        globals()[name] = settings
        return settings
    raise AttributeError(f"module 'workers' has no attribute {name!r}")
