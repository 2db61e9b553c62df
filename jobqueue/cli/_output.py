"""What the operations commands share: running a coroutine with the pool closed after, and output.

Times are shown in UTC and say so (``2026-12-04 01:35:04Z``), in every table of every command: the
same instant reads the same on every host, and ``--json`` gives ISO-8601 with its offset.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from collections.abc import Awaitable, Callable, Iterable, Sequence, Set
from typing import Any, TypeVar

from rich.console import Console
from rich.table import Table
from rich.text import Text

from jobqueue.backend.connection import close_queues

T = TypeVar("T")

JSON_HELP = "Print JSON instead of a table (for scripts)."


def run_async(make: Callable[[], Awaitable[T]]) -> T:
    """Run one command's coroutine in a fresh event loop and close the Redis pool before it ends."""

    async def main() -> T:
        try:
            return await make()
        finally:
            await close_queues()

    return asyncio.run(main())


def print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, default=str))


def table(
    title: str | None, columns: Sequence[str], rows: Iterable[Sequence[Any]], numeric: Set[str] = frozenset()
) -> None:
    """A rich table on stdout; cells are shown as text, never read as rich markup."""
    out = Table(title=title, title_justify="left")
    for column in columns:
        out.add_column(column, justify="right" if column in numeric else "left")
    for row in rows:
        out.add_row(*(Text(cell(v)) for v in row))
    console = Console(markup=False, highlight=False)
    if not console.is_terminal:  # piped or captured: no 80-column default squeezing the table
        console = Console(markup=False, highlight=False, width=200)
    console.print(out)


def cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, dt.datetime):
        return utc_time(value)
    return str(value)


def utc_time(value: dt.datetime, *, millis: bool = False) -> str:
    """``value`` in UTC with its zone: ``2026-12-04 01:35:04Z`` (``.123`` before the Z with ``millis``)."""
    if value.tzinfo is None:
        raise ValueError(f"a naive datetime has no zone to show: {value!r}")
    shown = value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S.%f" if millis else "%Y-%m-%d %H:%M:%S")
    return (shown[:-3] if millis else shown) + "Z"


def seconds(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.2f} s"


def per_minute(value: float) -> str:
    """A rate: one decimal from 1 a minute up; below, enough digits that a few jobs an hour do not
    read as 0.0 (2 in the hour: ``0.033``)."""
    if value == 0 or value >= 1:
        return f"{value:.1f}"
    return f"{value:.2g}"


def ms_time(ms: int | None) -> str:
    if not ms:
        return "-"
    return utc_time(dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC))
