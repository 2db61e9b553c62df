"""The ``jobqueue`` command: operate queues, serve the dashboard, run a development stack.

Each group of commands lives in its own module and registers itself on ``app``; this module only
imports them. Errors are one line on stderr and a non-zero exit (see ``jobqueue.cli._app``).
"""

from __future__ import annotations

from jobqueue.cli import batches, dev, enqueue, events, ops, schedules  # noqa: F401  (each registers its commands on app)
from jobqueue.cli._app import app, run

__all__ = ["app", "main"]


def main() -> None:
    """Entry point of the ``jobqueue`` console script."""
    run()
