"""``jobqueue schedules``: the recurring schedules, with the arq cron jobs of the worker classes.

The cron jobs (such as the daily curated collections on ``CollectionsSettings``) are part of the
code, not of Redis: they are listed beside the schedules, marked ``arq-cron``, with no fire count.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import typer
from arq.cron import CronJob, next_cron
from pydantic import ValidationError

from jobqueue.cli._app import app
from jobqueue.cli._output import JSON_HELP, print_json, run_async, table
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


def _fires(row: dict[str, Any]) -> str:
    if row["kind"] != "schedule":
        return "-"
    return str(row["fired"]) + ("" if row["limit"] is None else f"/{row['limit']}")


def _next_run(row: dict[str, Any]) -> str:
    shown = (row["next_run"] or "finished").replace("T", " ").removesuffix("Z")
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
    rows = [schedule_row(s) for s in run_async(lambda: get_schedules(name))] + cron_job_rows(name)
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
