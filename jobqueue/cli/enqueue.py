"""``jobqueue enqueue <type>``: one sub-command per job type, for trying things by hand.

Each calls the same helper an application would (``enqueue_product_embedding``, ...), so arguments
are validated the same way (a bad one is a one-line error and nothing is written).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

import typer

import jobqueue
from jobqueue.cli._app import app
from jobqueue.cli._output import JSON_HELP, print_json, run_async
from jobqueue.queue.job import JobHandle

enqueue_app = typer.Typer(help="Enqueue one job of a given type (for manual testing).", no_args_is_help=True)
app.add_typer(enqueue_app, name="enqueue")

Id = Annotated[str, typer.Argument(show_default=False)]
Priority = Annotated[int | None, typer.Option(help="1 (highest) to 10 (lowest); default: the queue's.")]
Delay = Annotated[float | None, typer.Option(help="Seconds before the job is due.")]
TriggeredBy = Annotated[str, typer.Option(help="Recorded in the payload.")]
JsonFlag = Annotated[bool, typer.Option("--json", help=JSON_HELP)]
MANUAL = "cli"


def _report(make: Callable[[], Awaitable[JobHandle | list[JobHandle]]], as_json: bool) -> None:
    result = run_async(make)
    handles = result if isinstance(result, list) else [result]
    rows = [{"job_id": h.job_id, "queue": h.queue_name, "created": h.created, "rerun": h.rerun} for h in handles]
    if as_json:
        print_json(rows if isinstance(result, list) else rows[0])
        return
    for row in rows:
        what = "created" if row["created"] else "rerun after the current run" if row["rerun"] else "already queued"
        print(f"{row['job_id']}: {what}")


@enqueue_app.command("product-embedding")
def product_embedding(
    product_id: Id,
    priority: Priority = None,
    delay: Delay = None,
    triggered_by: TriggeredBy = MANUAL,
    as_json: JsonFlag = False,
) -> None:
    """Embed one product."""
    _report(
        lambda: jobqueue.enqueue_product_embedding(
            product_id, triggered_by=triggered_by, priority=priority, delay=delay
        ),
        as_json,
    )


@enqueue_app.command("product-enrichment")
def product_enrichment(
    product_id: Id,
    prompt_version: Annotated[str | None, typer.Option()] = None,
    priority: Priority = None,
    delay: Delay = None,
    triggered_by: TriggeredBy = MANUAL,
    as_json: JsonFlag = False,
) -> None:
    """Enrich one product with the LLM."""
    _report(
        lambda: jobqueue.enqueue_product_enrichment(
            product_id, triggered_by=triggered_by, prompt_version=prompt_version, priority=priority, delay=delay
        ),
        as_json,
    )


@enqueue_app.command("product-processing")
def product_processing(product_id: Id, triggered_by: TriggeredBy = MANUAL, as_json: JsonFlag = False) -> None:
    """Enrich and embed one product (two jobs)."""

    async def both() -> list[JobHandle]:
        jobs = await jobqueue.enqueue_product_processing(product_id, triggered_by=triggered_by)
        return [jobs.enrichment_job, jobs.embedding_job]

    _report(both, as_json)


@enqueue_app.command("taste-profile-embedding")
def taste_profile_embedding(
    taste_profile_id: Id,
    user_id: Id,
    priority: Priority = None,
    delay: Delay = None,
    triggered_by: TriggeredBy = MANUAL,
    as_json: JsonFlag = False,
) -> None:
    """Embed one taste profile."""
    _report(
        lambda: jobqueue.enqueue_taste_profile_embedding(
            taste_profile_id, user_id, triggered_by=triggered_by, priority=priority, delay=delay
        ),
        as_json,
    )


@enqueue_app.command("curated-collections")
def curated_collections(
    surface: Annotated[str, typer.Argument(help="home, discovery or occasion.", show_default=False)],
    date: Annotated[str, typer.Argument(help="YYYY-MM-DD.", show_default=False)],
    priority: Priority = None,
    delay: Delay = None,
    triggered_by: TriggeredBy = MANUAL,
    as_json: JsonFlag = False,
) -> None:
    """Build the curated collections of one surface and date."""
    _report(
        lambda: jobqueue.enqueue_curated_collections(
            surface, date, triggered_by=triggered_by, priority=priority, delay=delay
        ),
        as_json,
    )


@enqueue_app.command("reminder-dispatch")
def reminder_dispatch(
    schedule_id: Id,
    user_id: Id,
    channel: Annotated[str, typer.Argument(help="PUSH, EMAIL or SMS.", show_default=False)],
    title: Annotated[str, typer.Option(help="The reminder's title.")],
    body: Annotated[str, typer.Option(help="The reminder's text.")],
    scheduled_for: Annotated[str, typer.Option(help="ISO-8601 time with an offset; past: at once.")],
    priority: Priority = None,
    triggered_by: TriggeredBy = MANUAL,
    as_json: JsonFlag = False,
) -> None:
    """Send one reminder at SCHEDULED_FOR."""
    _report(
        lambda: jobqueue.enqueue_reminder_dispatch(
            schedule_id,
            user_id,
            channel,
            {"title": title, "body": body},
            scheduled_for,
            triggered_by=triggered_by,
            priority=priority,
        ),
        as_json,
    )
