"""The worker ``python -m bench capacity`` starts: ``arq bench.capacity_worker.CapacitySettings``.

It runs the queue named by ``BENCH_CAPACITY_QUEUE`` with that queue's own options (concurrency,
attempts, retention) and a handler that does no work but returns the queue's real result, so what
Redis does per job is what it does for that queue in production, minus the job's own work.
"""

from __future__ import annotations

import os
from typing import Any

from bench.shapes import result_for
from jobqueue import build_worker_settings, queue_options

QUEUE_ENV = "BENCH_CAPACITY_QUEUE"


def __getattr__(name: str) -> Any:
    # Built when arq asks for it, from the environment of this process (never at import).
    if name != "CapacitySettings":
        raise AttributeError(name)
    queue = os.environ[QUEUE_ENV]

    async def handler(ctx: dict[str, Any], payload: Any) -> Any:
        return result_for(queue, payload)

    return build_worker_settings(queue, handler, name="CapacitySettings", options=queue_options(queue))
