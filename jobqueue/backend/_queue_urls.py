"""``JOBQUEUE_<QUEUE>_REDIS_URL``: a queue on a Redis of its own, read and checked with the settings.

The variable's name is the queue's upper-cased, ``-`` → ``_`` (``JOBQUEUE_REMINDER_DISPATCH_REDIS_URL``).
A queue without one lives on ``REDIS_URL``. Every variable of that shape is checked when the settings
are first read, so before anything is written: a malformed URL, or a name that is no queue (a typo
would quietly leave the queue on ``REDIS_URL``), raises ``ConfigurationError`` naming the variable.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from urllib.parse import urlsplit

from jobqueue.backend import _sentinel
from jobqueue.constants import QueueName
from jobqueue.errors import ConfigurationError

_VARIABLE = re.compile(r"^JOBQUEUE_(?P<queue>[A-Z0-9_]+)_REDIS_URL$")
# The URL forms client_for_url takes (the Sentinel ones through jobqueue.backend.connection as well).
URL_SCHEMES = ("redis", "rediss", "unix", "redis+sentinel", "rediss+sentinel")


def variable_for(queue: str) -> str:
    """The variable that puts ``queue`` on a Redis of its own."""
    return f"JOBQUEUE_{queue.upper().replace('-', '_')}_REDIS_URL"


def url_problem(url: str) -> str | None:
    """Why ``url`` is not a Redis URL jobqueue can use, or None when it is."""
    try:
        parts = urlsplit(url)
        port_text = parts.netloc.rpartition("@")[2]
        if parts.scheme in ("redis", "rediss") and "," not in port_text:
            parts.port  # noqa: B018  (raises ValueError on a bad port)
    except ValueError as exc:
        return str(exc)
    if parts.scheme not in URL_SCHEMES:
        return "expected a " + ", ".join(f"{s}://" for s in URL_SCHEMES) + " URL"
    if parts.scheme == "unix":
        return None if parts.path else "a unix:// URL needs the socket's path"
    if parts.scheme in _sentinel.SCHEMES:
        try:
            _sentinel.parse(url)
        except ValueError as exc:
            return str(exc)
        return None
    if not parts.hostname:
        return "the URL names no host"
    return None


def queue_urls(environ: Mapping[str, str], redacted: Callable[[str], str]) -> dict[str, str]:
    """Queue name → its own Redis URL, from the ``JOBQUEUE_<QUEUE>_REDIS_URL`` variables in ``environ``."""
    by_variable = {variable_for(q.value): q.value for q in QueueName}
    found: dict[str, str] = {}
    for name, value in environ.items():
        match = _VARIABLE.match(name.upper())
        if match is None:
            continue
        queue = by_variable.get(name.upper())
        if queue is None:
            known = ", ".join(sorted(by_variable))
            raise ConfigurationError(f"{name} names no queue: a queue's own Redis is set by one of {known}")
        value = value.strip()
        if not value:
            continue  # set but empty: the queue stays on REDIS_URL
        problem = url_problem(value)
        if problem is not None:
            try:
                shown = redacted(value)
            except ValueError:  # too broken to find its password in: show none of it
                shown = "..."
            raise ConfigurationError(f"{name}={shown!r}: {problem}")
        found[queue] = value
    return found
