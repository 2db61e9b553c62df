"""The rows of a schedule listing, shared by ``jobqueue schedules`` and the dashboard's
``api/schedules``: the recurring schedules stored in Redis, then the arq cron jobs of the worker
settings classes (``workers.settings.BUILDERS``), marked ``arq-cron``.

The cron jobs are part of the code, not of Redis: they have no fire count, limit or end.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from arq.cron import CronJob, next_cron
from pydantic import ValidationError

from jobqueue import _application
from jobqueue.coreapi.queues import get_queue
from jobqueue.errors import ConfigurationError
from jobqueue.queue.queue import Queue
from jobqueue.schedules.schedules import Schedule, get_schedules

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
    rows = []
    for class_name, build in _application.settings_builders().items():
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


async def schedule_rows(queue: str | Queue | None = None) -> list[dict[str, Any]]:
    """Every schedule (of ``queue``, if given; an unknown one raises ``InvalidJobError``), soonest
    next run first, then the arq cron jobs; the cron settings are checked before Redis is read."""
    name = None if queue is None else get_queue(queue).name
    cron_rows = cron_job_rows(name)
    return [schedule_row(s) for s in await get_schedules(name)] + cron_rows
