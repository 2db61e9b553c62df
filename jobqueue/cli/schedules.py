"""``jobqueue schedules``: the recurring schedules, with the arq cron jobs of the worker classes.

The cron jobs (such as the daily curated collections on ``CollectionsSettings``) are part of the
code, not of Redis: they are listed beside the schedules, marked ``arq-cron``, with no fire count.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from typing import Any

import typer
from arq.cron import CronJob, next_cron
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table

from jobqueue.cli._app import app
from jobqueue.connection import close_queues
from jobqueue.errors import ConfigurationError, JobQueueError
from jobqueue.queues import get_queue
from jobqueue.schedules import Schedule, get_schedules, remove_schedule

schedules_app = typer.Typer(help="Recurring schedules and the workers' arq cron jobs.", no_args_is_help=False)
app.add_typer(schedules_app, name="schedules")

ARQ_WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def _iso(when: dt.datetime | None) -> str | None:
    return None if when is None else when.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def schedule_row(s: Schedule) -> dict[str, Any]:
    return {
        "kind": "schedule",
        "id": s.id,
        "queue": s.queue,
        "pattern": s.pattern,
        "tz": s.tz,
        "next_run": _iso(s.next_run),
        "last_run": _iso(s.last_run),
        "fired": s.fired,
        "limit": s.limit,
        "end": _iso(s.end),
        "priority": s.priority,
        "payload": s.payload,
        "error": s.error,
    }


def _cron_field(value: Any, convert: Any = int) -> str:
    if value is None:
        return "*"
    values = value if isinstance(value, set | frozenset | list | tuple) else {value}
    return ",".join(str(v) for v in sorted(convert(v) for v in values))


def _cron_weekday(value: Any) -> int:
    # arq counts Monday as 0 (datetime.weekday); cron counts Sunday as 0.
    index = ARQ_WEEKDAYS.index(value.lower()) if isinstance(value, str) else int(value)
    return (index + 1) % 7


def cron_pattern(job: CronJob) -> str:
    """An arq cron job's fields as a cron expression (with a seconds field when not 0)."""
    fields = [
        _cron_field(job.minute),
        _cron_field(job.hour),
        _cron_field(job.day),
        _cron_field(job.month),
        _cron_field(job.weekday, _cron_weekday),
    ]
    if job.second != 0:
        fields.insert(0, _cron_field(job.second))
    return "cron " + " ".join(fields)


def cron_job_rows(queue: str | None) -> list[dict[str, Any]]:
    """The cron jobs of the worker settings classes in ``workers.settings.BUILDERS``."""
    from workers.settings import BUILDERS

    rows = []
    for class_name, build in BUILDERS.items():
        try:
            settings = build()
        except ValidationError as exc:
            raise ConfigurationError(f"cannot build workers.{class_name}: {exc}") from None
        attrs = vars(settings)
        if queue is not None and attrs["jobqueue_queue"].name != queue:
            continue
        zone = attrs.get("timezone")
        for job in attrs.get("cron_jobs", []):
            now = dt.datetime.now(zone) if zone is not None else dt.datetime.now().astimezone()
            following = next_cron(
                now,
                month=job.month,
                day=job.day,
                weekday=job.weekday,
                hour=job.hour,
                minute=job.minute,
                second=job.second,
                microsecond=job.microsecond,
            )
            rows.append(
                {
                    "kind": "arq-cron",
                    "id": job.name,
                    "queue": attrs["jobqueue_queue"].name,
                    "pattern": cron_pattern(job),
                    "tz": str(zone) if zone is not None else "local",
                    "next_run": _iso(following.replace(microsecond=0)),
                    "settings": f"workers.{class_name}",
                }
            )
    return rows


async def _schedule_rows(queue: str | None) -> list[dict[str, Any]]:
    try:
        return [schedule_row(s) for s in await get_schedules(queue)]
    finally:
        await close_queues()


def _table(rows: list[dict[str, Any]]) -> Table:
    table = Table(title="Schedules")
    for column in ("kind", "id", "queue", "pattern", "tz", "next run (UTC)", "fired"):
        table.add_column(column, overflow="fold", no_wrap=column in ("kind", "fired"))
    for row in rows:
        fired = "-" if row["kind"] != "schedule" else str(row["fired"])
        if row["kind"] == "schedule" and row["limit"] is not None:
            fired += f"/{row['limit']}"
        next_run = (row["next_run"] or "finished").replace("T", " ").removesuffix("Z")
        if row.get("error"):
            next_run += f" (last slot skipped: {row['error']})"
        table.add_row(row["kind"], row["id"], row["queue"], row["pattern"], row["tz"], next_run, fired)
    return table


@schedules_app.callback(invoke_without_command=True)
def schedules(
    ctx: typer.Context,
    queue: str | None = typer.Option(None, "--queue", "-q", help="Only this queue's schedules and cron jobs."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """List the recurring schedules, and the arq cron jobs of the worker classes beside them."""
    if ctx.invoked_subcommand is not None:
        return
    name = None if queue is None else get_queue(queue).name
    rows = asyncio.run(_schedule_rows(name)) + cron_job_rows(name)
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
    else:
        Console().print(_table(rows))


async def _remove(schedule_id: str) -> bool:
    try:
        return await remove_schedule(schedule_id)
    finally:
        await close_queues()


@schedules_app.command("remove")
def remove(schedule_id: str = typer.Argument(..., help="The schedule's id.")) -> None:
    """Remove a schedule (jobs it already enqueued stay)."""
    if not asyncio.run(_remove(schedule_id)):
        raise JobQueueError(f"no schedule with id {schedule_id!r}")
    typer.echo(f"removed schedule {schedule_id}")
