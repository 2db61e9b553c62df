"""``jobqueue batches QUEUE``: a queue's batch lane — requests waiting for a submission, and each
Batch API submission with its progress, ending, tokens and cost."""

from __future__ import annotations

from typing import Annotated

import typer

from jobqueue.batches import BatchSubmission, get_batches
from jobqueue.cli._app import app
from jobqueue.cli._output import JSON_HELP, ms_time, print_json, run_async, table
from jobqueue.coreapi.queues import QUEUES, get_queue


def _row(s: BatchSubmission) -> list[object]:
    done = f"{s.completed + s.failed}/{s.requests}"
    return [
        s.sid,
        s.batch_id or "-",
        s.status,
        done,
        s.failed,
        s.resubmitted,
        s.sent_sync,
        s.input_tokens + s.output_tokens,
        f"{s.cost_usd:.6f}",
        ms_time(s.created_at),
        ms_time(s.ended_at),
    ]


@app.command()
def batches(
    queue: Annotated[str, typer.Argument(help=f"Queue name: {', '.join(QUEUES)}.", show_default=False)],
    as_json: Annotated[bool, typer.Option("--json", help=JSON_HELP)] = False,
) -> None:
    """QUEUE's batch lane: pending requests, open submissions and the recently ended ones."""
    q = get_queue(queue)
    view = run_async(lambda: get_batches(q.name))
    if as_json:
        print_json(view.as_dict())
        return
    columns = ["submission", "batch", "status", "answered", "failed", "resubmitted", "sync", "tokens"]
    columns += ["cost $", "created", "ended"]
    rows = [_row(s) for s in [*view.open, *view.ended]]
    title = f"{q.name}: batch lane ({view.pending} request(s) waiting for a submission, {len(view.open)} open)"
    table(title, columns, rows, {"answered", "failed", "resubmitted", "sync", "tokens", "cost $"})
