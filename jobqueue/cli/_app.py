"""The Typer application every command module registers on, and the one-line error policy."""

from __future__ import annotations

import sys

import typer

from jobqueue.errors import JobQueueError

app = typer.Typer(
    name="jobqueue",
    help="Operate jobqueue's queues, serve its dashboard and run a development stack.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root() -> None:
    """Operate jobqueue's queues, serve its dashboard and run a development stack."""


def run(argv: list[str] | None = None) -> None:
    """Run the command line; a ``JobQueueError`` becomes one line on stderr and exit code 1."""
    try:
        app(args=argv, standalone_mode=True)
    except JobQueueError as exc:
        print(f"jobqueue: error: {exc}", file=sys.stderr)
        sys.exit(1)
