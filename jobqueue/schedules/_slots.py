"""Slots of a recurring schedule, as pure functions: cron patterns in a time zone, every N ms.

The checks of a rule's arguments live here too; each raises ``InvalidJobError``.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

from jobqueue import _validate
from jobqueue.constants import SCHEDULE_MIN_EVERY_S
from jobqueue.errors import InvalidJobError


@dataclass(frozen=True, slots=True)
class SlotRule:
    """What decides a schedule's slots: a cron pattern in ``tz``, or every ``every_ms`` from
    ``start_ms`` (the Unix epoch when None); none before ``start_ms`` nor after ``end_ms``."""

    cron: str | None = None
    every_ms: int | None = None
    tz: str = "UTC"
    start_ms: int | None = None
    end_ms: int | None = None

    def next_after(self, after_ms: int) -> int | None:
        """The first slot later than ``after_ms`` (Unix ms), or None when there is none."""
        first = after_ms + 1 if self.start_ms is None else max(after_ms + 1, self.start_ms)
        if self.every_ms is not None:
            anchor = self.start_ms or 0
            slot = anchor + -(-(first - anchor) // self.every_ms) * self.every_ms
        else:
            slot = _cron_at_or_after(self.cron or "", ZoneInfo(self.tz), first)
        if slot is None or (self.end_ms is not None and slot > self.end_ms):
            return None
        return slot

    def pattern(self, queue: str) -> str:
        """What an upsert must leave unchanged to keep the next slot: the slot rule, and the queue
        (a schedule moved to another queue starts afresh there rather than catching up)."""
        return json.dumps([queue, self.cron, self.every_ms, self.tz, self.start_ms])


def _cron_at_or_after(cron: str, zone: ZoneInfo, first_ms: int) -> int | None:
    # cronsim walks local wall-clock time in ``zone`` as Debian cron does: a fixed time that falls
    # in a skipped hour fires at the first minute after the jump, one in a repeated hour fires once
    # (at its first occurrence); patterns with a wildcard hour follow real time. It yields slots
    # after the whole second it starts from; starting inside a repeated hour it can yield that
    # hour's first occurrence, already past: such slots are skipped.
    start = dt.datetime.fromtimestamp(math.ceil(first_ms / 1000) - 1, zone)
    for when in CronSim(cron, start):
        slot = int(when.timestamp()) * 1000
        if slot >= first_ms:
            return slot
    return None  # cronsim gives up when nothing matches within 50 years


def to_ms(when: dt.datetime | None) -> int | None:
    return None if when is None else int(when.timestamp() * 1000)


def to_datetime(ms: int | None) -> dt.datetime | None:
    return None if ms is None else dt.datetime.fromtimestamp(ms / 1000, dt.UTC)


def _zone(value: Any) -> str:
    if not isinstance(value, str):
        raise InvalidJobError(f"tz must be an IANA time zone name such as 'Europe/London', got {value!r}")
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidJobError(f"tz must be an IANA time zone name such as 'Europe/London', got {value!r}") from None
    return value


def _cron(value: Any) -> str:
    if not isinstance(value, str):
        raise InvalidJobError(f"cron must be a cron expression string such as '0 3 * * *', got {value!r}")
    try:
        CronSim(value, dt.datetime.now(dt.UTC))
    except CronSimError as exc:
        raise InvalidJobError(f"invalid cron expression {value!r}: {exc}") from None
    return value


def _every_ms(value: Any) -> int:
    seconds = _validate.seconds(value, "every")
    if seconds < SCHEDULE_MIN_EVERY_S:
        raise InvalidJobError(f"every must be at least {SCHEDULE_MIN_EVERY_S:g}s, got {value!r}")
    return round(seconds * 1000)


def _instant_ms(value: Any, what: str) -> int | None:
    if value is None:
        return None
    ms = to_ms(_validate.aware_datetime(value, what)) or 0
    if ms <= 0:
        raise InvalidJobError(f"{what} must be after 1970-01-01, got {value!r}")
    return ms


def rule_from(*, cron: Any, every: Any, tz: Any, start: Any, end: Any) -> SlotRule:
    """A validated ``SlotRule`` from ``upsert_schedule``'s arguments."""
    if (cron is None) == (every is None):
        raise InvalidJobError("give exactly one of cron= (a cron expression) or every= (seconds)")
    zone = _zone(tz)
    cron_expr = _cron(cron) if cron is not None else None
    every_ms = _every_ms(every) if every is not None else None
    start_ms, end_ms = _instant_ms(start, "start"), _instant_ms(end, "end")
    if start_ms is not None and end_ms is not None and start_ms >= end_ms:
        raise InvalidJobError(f"start must be before end, got start={start!r} end={end!r}")
    return SlotRule(cron=cron_expr, every_ms=every_ms, tz=zone, start_ms=start_ms, end_ms=end_ms)
