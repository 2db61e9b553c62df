"""Find the Redis the tests run against, or start an embedded Valkey when none answers."""

from __future__ import annotations

import os
from urllib.parse import urlsplit, urlunsplit

import redis

from jobqueue.embedded import redis_answers, start_embedded_valkey

TEST_DB_ENV = "JOBQUEUE_TEST_REDIS_DB"
DEFAULT_TEST_DB = 13
OWNED_PATTERNS = ("jq:*", "arq:*")


def _with_db(url: str, db: int) -> str:
    parts = urlsplit(url)
    if parts.scheme == "unix":
        query = "&".join(q for q in parts.query.split("&") if q and not q.startswith("db="))
        return urlunsplit(parts._replace(query="&".join(filter(None, [query, f"db={db}"]))))
    return urlunsplit(parts._replace(path=f"/{db}"))


def resolve_test_redis_url():
    """Return ``(url, server)``: ``server`` is the embedded Valkey to stop, or None."""
    db = int(os.environ.get(TEST_DB_ENV, DEFAULT_TEST_DB))
    configured = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379")
    url = _with_db(configured, db)
    if redis_answers(url):
        return url, None
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
