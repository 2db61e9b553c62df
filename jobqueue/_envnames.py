"""Every ``JOBQUEUE_*`` environment variable jobqueue, its workers and its tests read, in one place,
and the one warning an unknown one gets: a misspelt setting is otherwise silently ignored.

To add a variable, add its name here: a process-wide one to ``VARIABLES``; a per-queue option,
read as ``JOBQUEUE_<QUEUE>_<OPTION>`` for every queue (``JOBQUEUE_PRODUCT_EMBEDDING_CONCURRENCY``),
to ``QUEUE_OPTIONS`` as its ``<OPTION>`` part; a family of names under one prefix (all read by one
component) to ``FAMILIES``. ``tests/test_envnames.py`` checks that every name the code and the
configuration files use is known here.
"""

from __future__ import annotations

import difflib
import logging
import os
from collections.abc import Iterable, Mapping

from jobqueue.constants import QUEUE_NAMES

logger = logging.getLogger("jobqueue.settings")

PREFIX = "JOBQUEUE_"

VARIABLES: set[str] = {
    # jobqueue.settings
    "JOBQUEUE_REDIS_TIMEOUT",
    "JOBQUEUE_REDIS_STARTUP_WAIT",
    "JOBQUEUE_EVENTS_MAXLEN",
    "JOBQUEUE_AUTO_PIPELINE",
    "JOBQUEUE_TRACING",
    "JOBQUEUE_ENQUEUE_REPLICAS",
    "JOBQUEUE_ENQUEUE_REPLICAS_TIMEOUT",
    # jobqueue.spend and workers.providers.embedcache: prices, and the content-hash cache of embeddings
    "JOBQUEUE_LLM_PRICES",
    "JOBQUEUE_LLM_BATCH_DISCOUNT",
    "JOBQUEUE_EMBEDDING_CACHE_TTL",
    # workers.providers.batchlane: the LLM Batch API lane
    "JOBQUEUE_BATCH_GATHER_MAX",
    "JOBQUEUE_BATCH_GATHER_QUIET",
    "JOBQUEUE_BATCH_KEEP_ENDED",
    "JOBQUEUE_BATCH_LOCK_TTL",
    "JOBQUEUE_BATCH_MAX_FILE_BYTES",
    "JOBQUEUE_BATCH_MAX_REQUESTS",
    "JOBQUEUE_BATCH_POLL_INTERVAL",
    "JOBQUEUE_BATCH_RECHECK_AFTER",
    "JOBQUEUE_BATCH_SYNC_AFTER",
    # jobqueue.metrics
    "JOBQUEUE_METRICS_PORT",
    "JOBQUEUE_METRICS_ADDR",
    # the dashboard (jobqueue.dashboard.auth, .origins) and compose.yaml's port for it
    "JOBQUEUE_DASHBOARD_TOKEN",
    "JOBQUEUE_DASHBOARD_USER",
    "JOBQUEUE_DASHBOARD_PASSWORD",
    "JOBQUEUE_DASHBOARD_ALLOWED_HOSTS",
    "JOBQUEUE_DASHBOARD_ALLOWED_ORIGINS",
    "JOBQUEUE_DASHBOARD_PORT",
    # jobqueue dev
    "JOBQUEUE_DEV_DASHBOARD_PORT",
    "JOBQUEUE_DEV_DATA_DIR",
    "JOBQUEUE_DEV_LLM_PORT",
    # workers/: set by a worker process for the ones it starts
    "JOBQUEUE_CONFIG_REPORTED",
    # the test suite
    "JOBQUEUE_TEST_REDIS_DB",
    "JOBQUEUE_TEST_DATABASE_URL",
    "JOBQUEUE_TEST_CONCURRENCY",
    "JOBQUEUE_TEST_ATTEMPTS",
    "JOBQUEUE_DASHBOARD_SCREENSHOT",
}

# The <OPTION> parts of JOBQUEUE_<QUEUE>_<OPTION>: jobqueue.worker.options.QueueOptions' fields, the
# worker's metrics port (jobqueue.metrics) and the embedding batches (workers.providers.batching).
QUEUE_OPTIONS: set[str] = {
    "CONCURRENCY",
    "TIMEOUT",
    "ATTEMPTS",
    "BACKOFF_BASE",
    "BACKOFF_MAX",
    "BACKOFF_JITTER",
    "KEEP_COMPLETED",
    "KEEP_COMPLETED_AGE",
    "KEEP_FAILED",
    "KEEP_FAILED_AGE",
    "POLL_DELAY",
    "TICK_INTERVAL",
    "WORKER_LEASE",
    "CANCEL_GRACE",
    "METRICS_PORT",
    "BATCH_SIZE",
    "BATCH_WAIT",
    # jobqueue.backend._queue_urls: the queue's own Redis
    "REDIS_URL",
}

# Prefixes under which every name is known (a component that reads a whole family of variables).
FAMILIES: tuple[str, ...] = ()

# Set by a parent process (`jobqueue dev`) that has warned already: its workers say it at DEBUG only.
REPORTED_VARIABLE = "JOBQUEUE_CONFIG_REPORTED"

_warned: set[str] = set()


def queue_prefix(queue: str) -> str:
    """``JOBQUEUE_<QUEUE>_`` of one queue: ``product-embedding`` -> ``JOBQUEUE_PRODUCT_EMBEDDING_``."""
    return PREFIX + queue.upper().replace("-", "_") + "_"


def is_known(name: str) -> bool:
    """Whether ``name`` is a variable jobqueue reads (any ``JOBQUEUE_<QUEUE>_<OPTION>`` included)."""
    if name in VARIABLES or name.startswith(FAMILIES):
        return True
    return any(
        name.startswith(prefix) and name[len(prefix) :] in QUEUE_OPTIONS
        for prefix in map(queue_prefix, QUEUE_NAMES.values())
    )


def known_names() -> list[str]:
    """Every known name spelt out (the per-queue ones for each queue), to suggest from."""
    per_queue = [queue_prefix(q) + option for q in QUEUE_NAMES.values() for option in QUEUE_OPTIONS]
    return sorted({*VARIABLES, *per_queue, *FAMILIES})


def closest(name: str) -> str | None:
    """The known name ``name`` most likely misspells, or None when none is close."""
    matches = difflib.get_close_matches(name, known_names(), n=1, cutoff=0.75)
    return matches[0] if matches else None


def unknown_variables(environ: Mapping[str, str] | None = None) -> list[str]:
    """The ``JOBQUEUE_*`` names in ``environ`` (default: the process's) that jobqueue does not read."""
    env = os.environ if environ is None else environ
    return sorted(name for name in env if name.upper().startswith(PREFIX) and not is_known(name.upper()))


def warn_unknown_variables(environ: Mapping[str, str] | None = None) -> list[str]:
    """Log one warning per unknown ``JOBQUEUE_*`` variable, once per process, naming the closest
    known one; returns the names warned about now."""
    env = os.environ if environ is None else environ
    level = logging.DEBUG if env.get(REPORTED_VARIABLE) == "1" else logging.WARNING
    fresh = [name for name in unknown_variables(env) if name not in _warned]
    for name in fresh:
        _warned.add(name)
        suggestion = closest(name.upper())
        hint = f"; did you mean {suggestion}?" if suggestion else " (no known setting is close to it)"
        logger.log(level, "%s is not a jobqueue setting and is ignored%s", name, hint)
    return fresh


def forget_warnings(names: Iterable[str] | None = None) -> None:
    """Let ``names`` (default: all) be warned about again (for tests)."""
    if names is None:
        _warned.clear()
    else:
        _warned.difference_update(names)
