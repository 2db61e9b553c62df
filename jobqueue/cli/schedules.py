"""``jobqueue schedules``: the recurring schedules, with the arq cron jobs of the worker classes.

The cron jobs (such as the daily curated collections on ``CollectionsSettings``) are part of the
code, not of Redis: they are listed beside the schedules, marked ``arq-cron``, with no fire count.
"""

from __future__ import annotations

from typing import Any

import typer

from jobqueue.cli._app import app
from jobqueue.cli._output import JSON_HELP, print_json, run_async, table
from jobqueue.coreapi.queues import get_queue
from jobqueue.errors import JobQueueError
from jobqueue.schedules._schedule_rows import schedule_rows
from jobqueue.schedules.schedules import remove_schedule

schedules_app = typer.Typer(help="Recurring schedules and the workers' arq cron jobs.", no_args_is_help=False)
app.add_typer(schedules_app, name="schedules")


def _fires(row: dict[str, Any]) -> str:
    if row["kind"] != "schedule":
        return "-"
    return str(row["fired"]) + ("" if row["limit"] is None else f"/{row['limit']}")


def _next_run(row: dict[str, Any]) -> str:
    shown = (row["next_run"] or "finished").replace("T", " ")  # UTC, its Z kept like every CLI time
    return shown + (f" (last slot skipped: {row['error']})" if row.get("error") else "")


@schedules_app.callback(invoke_without_command=True)
def schedules(
    ctx: typer.Context,
    queue: str | None = typer.Option(None, "--queue", "-q", help="Only this queue's schedules and cron jobs."),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """List the recurring schedules, and the arq cron jobs of the worker classes beside them."""
    if ctx.invoked_subcommand is not None:
        return
    name = None if queue is None else get_queue(queue).name
    rows = run_async(lambda: schedule_rows(name))
    if as_json:
        print_json(rows)
        return
    columns = ["kind", "id", "queue", "pattern", "tz", "next run (UTC)", "fired"]
    cells = [[r["kind"], r["id"], r["queue"], r["pattern"], r["tz"], _next_run(r), _fires(r)] for r in rows]
    table("schedules (arq-cron: a cron job of a worker settings class)", columns, cells)


@schedules_app.command("remove")
def remove(schedule_id: str = typer.Argument(..., help="The schedule's id.")) -> None:
    """Remove a schedule (jobs it already enqueued stay)."""
    if not run_async(lambda: remove_schedule(schedule_id)):
        raise JobQueueError(f"no schedule with id {schedule_id!r}")
    print(f"removed schedule {schedule_id}")
