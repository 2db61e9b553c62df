"""Checks on enqueue and queue-call arguments: each raises InvalidJobError before any write."""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

from pydantic import BaseModel, ValidationError

from jobqueue.constants import (
    ID_FORBIDDEN_CHARACTERS,
    LANES,
    MAX_ID_LENGTH,
    MAX_PAYLOAD_BYTES,
    MAX_PRIORITY,
    MIN_PRIORITY,
)
from jobqueue.errors import InvalidJobError


def describe(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "payload"
        # A ValueError raised by our own validators reads better without pydantic's prefix.
        message = str(err["ctx"]["error"]) if err["type"] == "value_error" else err["msg"]
        parts.append(f"{where}: {message}")
    return "; ".join(parts)


def payload(model: type[BaseModel], value: Any, queue: str) -> BaseModel:
    if isinstance(value, model):
        return value
    if isinstance(value, BaseModel):
        value = value.model_dump()
    try:
        return model.model_validate(value)
    except ValidationError as exc:
        raise InvalidJobError(f"invalid {queue} job: {describe(exc)}") from None


# Every blank but the space is unprintable (checked over all of Unicode in tests/coreapi/test_validation.py).
_REFUSED_PRINTABLE = frozenset(ID_FORBIDDEN_CHARACTERS) | {" "}


def entity_id(value: str) -> str:
    """An id that is safe in Redis keys, SCAN patterns and log lines (length is checked before)."""
    if not value.isprintable() or not _REFUSED_PRINTABLE.isdisjoint(value):
        raise ValueError(f"must not contain blanks, control characters or any of {' '.join(ID_FORBIDDEN_CHARACTERS)}")
    return value


def identifier(value: Any, what: str) -> str:
    """An id given as an argument, checked as the ids in payloads are (length, then ``entity_id``)."""
    if not isinstance(value, str) or not 1 <= len(value) <= MAX_ID_LENGTH:
        raise InvalidJobError(f"{what} must be a string of 1 to {MAX_ID_LENGTH} characters, got {value!r}")
    try:
        return entity_id(value)
    except ValueError as exc:
        raise InvalidJobError(f"{what} {exc}, got {value!r}") from None


def payload_size(payload_json: str, queue: str) -> None:
    size = len(payload_json.encode())
    if size > MAX_PAYLOAD_BYTES:
        raise InvalidJobError(
            f"invalid {queue} job: the payload is {size} bytes of JSON, more than the {MAX_PAYLOAD_BYTES} allowed"
        )


def priority(value: Any, default: int) -> int:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidJobError(f"priority must be an integer from {MIN_PRIORITY} to {MAX_PRIORITY}, got {value!r}")
    if not MIN_PRIORITY <= value <= MAX_PRIORITY:
        raise InvalidJobError(f"priority must be from {MIN_PRIORITY} (highest) to {MAX_PRIORITY}, got {value}")
    return value


def lane(value: Any) -> str | None:
    """The lane as a payload carries it: None for the default ``"sync"``, ``"batch"`` as it is."""
    if value not in LANES:
        raise InvalidJobError(f"lane must be one of {', '.join(map(repr, LANES))}, got {value!r}")
    return None if value == "sync" else value


def seconds(value: Any, what: str) -> float:
    """A non-negative duration given as seconds (int/float) or a timedelta."""
    if isinstance(value, dt.timedelta):
        value = value.total_seconds()
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InvalidJobError(f"{what} must be seconds (int or float) or a timedelta, got {value!r}")
    if value < 0:
        raise InvalidJobError(f"{what} must not be negative, got {value}")
    return float(value)


def aware_datetime(value: Any, what: str) -> dt.datetime:
    """An aware datetime, or an ISO-8601 string with an offset."""
    if isinstance(value, str):
        try:
            value = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise InvalidJobError(f"{what} must be an ISO-8601 datetime, got {value!r}") from None
    if not isinstance(value, dt.datetime):
        raise InvalidJobError(f"{what} must be a datetime or ISO-8601 string, got {value!r}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise InvalidJobError(f"{what} must include a timezone (got naive {value.isoformat()})")
    return value


def count(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidJobError(f"{what} must be a non-negative integer, got {value!r}")
    return value
