"""``jobqueue events QUEUE``: tail a queue's events as they happen (Ctrl-C stops)."""

from __future__ import annotations

import contextlib
import json
from typing import Annotated, Any

import typer

from jobqueue.cli._app import app
from jobqueue.cli._output import run_async, utc_time
from jobqueue.coreapi.queues import QUEUES, get_queue
from jobqueue.queue.events import JobEvent, check_since


def _line(event: JobEvent) -> str:
    stamp = "-" if event.timestamp is None else utc_time(event.timestamp, millis=True)
    details = " ".join(f"{k}={_value(v)}" for k, v in event.data.items())
    return f"{stamp}  {event.id}  {event.name:<9}  {event.job_id}  {details}".rstrip()


def _value(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))


@app.command()
def events(
    queue: Annotated[str, typer.Argument(help=f"Queue name: {', '.join(QUEUES)}.", show_default=False)],
    since: Annotated[
        str, typer.Option(help="'$': only new events; an event id: the events after it; '0': all kept.")
    ] = "$",
    count: Annotated[int, typer.Option(min=0, help="Stop after this many events (0: never).")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line (for scripts).")] = False,
) -> None:
    """Print QUEUE's events as they happen: added, active, progress, completed, retrying, failed, ..."""
    q = get_queue(queue)
    check_since(since)

    async def tail() -> None:
        seen = 0
        async with contextlib.aclosing(q.events(since)) as stream:
            async for event in stream:
                print(json.dumps(event.to_dict(), default=str) if as_json else _line(event), flush=True)
                seen += 1
                if count and seen >= count:
                    return

    with contextlib.suppress(KeyboardInterrupt):
        run_async(tail)
