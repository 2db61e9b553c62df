"""Stopping a worker's background tasks for sure."""

from __future__ import annotations

import asyncio
from typing import Any

# How long one cancellation is given before it is sent again.
_CANCEL_AGAIN_S = 0.5


async def cancel_and_wait(task: asyncio.Task[Any] | None) -> None:
    """Cancel ``task`` and wait until it has ended, cancelling it again if it goes on.

    A cancellation can be lost inside a Redis call made with a read timeout (Python 3.11's
    ``asyncio.timeout`` can absorb a cancellation that meets it), after which a background loop
    would run on and a worker's shutdown would wait for it forever.
    """
    while task is not None and not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=_CANCEL_AGAIN_S)
    if task is not None and not task.cancelled() and task.exception() is not None:
        task.exception()  # retrieved: an error of a stopped loop is not worth a warning at exit
