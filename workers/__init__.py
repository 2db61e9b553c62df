"""The Core API's workers: one arq settings class per queue.

    arq workers.EmbeddingSettings     # product-embedding
    arq workers.EnrichmentSettings    # product-enrichment
    arq workers.TasteProfileSettings  # taste-profile-embedding
    arq workers.CollectionsSettings   # curated-collections, with the daily cron job
    arq workers.RemindersSettings     # reminder-dispatch

Each class is built on first access (PEP 562), so importing this package reads no settings. A bad
setting (e.g. ``JOBQUEUE_PRODUCT_EMBEDDING_ATTEMPTS=abc``) ends the process with one line naming the
variable (``SystemExit``); ``workers.settings.BUILDERS`` raise ``ConfigurationError`` instead.
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
        from jobqueue._env import read_settings
        from jobqueue.errors import ConfigurationError
        from jobqueue.settings import get_settings
        from workers.config import WorkerEnv
        from workers.settings import BUILDERS

        try:
            # Read now, not inside arq's start-up, so a bad value there is reported the same way.
            get_settings()
            read_settings(WorkerEnv)
            settings = BUILDERS[name]()
        except ConfigurationError as exc:
            # `arq workers.<Name>` reaches this through getattr: a bad variable is one line on
            # stderr and exit status 1, not a traceback.
            raise SystemExit(f"jobqueue: {exc}") from exc
        globals()[name] = settings
        return settings
    raise AttributeError(f"module 'workers' has no attribute {name!r}")
