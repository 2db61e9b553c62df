"""Progress of the Core API jobs that have steps, reported with ``jobqueue.update_progress``.

As each step starts, a job reports ``{"step": name, "step_number": n, "steps": total, "percent": p}``
(``p``: the share of its steps finished), and ``{"step": "done", ..., "percent": 100}`` at the end,
so a finished job's ``JobInfo.progress`` never reads half-way. The dashboard draws it as a bar
labelled ``grouping · 2 of 4 · 25%``. Called outside a jobqueue run (a test or a host app calling a
job function directly), it reports nothing.
"""

from __future__ import annotations

from typing import Any

from jobqueue import update_progress
from jobqueue.worker._runner import RUN_KEY

DONE = "done"


class Steps:
    """The named steps of one run: ``await steps.start("grouping")``, then ``await steps.done()``."""

    def __init__(self, ctx: dict[str, Any], names: tuple[str, ...]) -> None:
        self.ctx = ctx
        self.names = names

    async def start(self, name: str) -> None:
        number = self.names.index(name) + 1
        await self._report(name, number, 100 * (number - 1) / len(self.names))

    async def done(self) -> None:
        await self._report(DONE, len(self.names), 100)

    async def _report(self, step: str, number: int, percent: float) -> None:
        if self.ctx.get(RUN_KEY) is None:
            return
        progress = {"step": step, "step_number": number, "steps": len(self.names), "percent": round(percent)}
        await update_progress(self.ctx, progress)
