"""Fixtures for the Core API workers: a fake OpenAI server, a SQLite store, fast queue options."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
from sqlalchemy.engine import make_url

from jobqueue import QUEUE_NAMES
from jobqueue.settings import get_settings
from tests.support.databases import drop_jq_tables
from workers.providers.store import SqlStore
from workers.testing.fake_openai import FakeOpenAI

DIMS = 8
FAST_OPTIONS = {
    "POLL_DELAY": "0.01",
    "TICK_INTERVAL": "0.05",
    "BACKOFF_BASE": "0.1",
    "BACKOFF_JITTER": "0",
    "WORKER_LEASE": "1",
    "TIMEOUT": "10",
}


@pytest.fixture
def fake_openai() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(dims=DIMS) as server:
        yield server


@pytest.fixture
async def core_env(monkeypatch, database_url, fake_openai) -> AsyncIterator[dict[str, str]]:
    """Environment of a worker pointed at the fake OpenAI server and a fresh database (each job
    test runs on a SQLite file and on PostgreSQL)."""
    env = {
        "LLM_BASE_URL": fake_openai.base_url,
        "LLM_API_KEY": "sk-test",
        "LLM_MODEL": "gpt-test",
        "EMBEDDING_MODEL": "embed-test",
        "EMBEDDING_DIMS": str(DIMS),
        "DATABASE_URL": database_url,
        "REMINDER_WEBHOOK_SECRET": "whsec-test",
    }
    for queue in QUEUE_NAMES.values():
        prefix = "JOBQUEUE_" + queue.upper().replace("-", "_") + "_"
        env |= {prefix + k: v for k, v in FAST_OPTIONS.items()}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    get_settings.cache_clear()
    is_pg = make_url(database_url).get_backend_name() == "postgresql"
    if is_pg:
        await drop_jq_tables(make_url(database_url))
    yield env
    if is_pg:
        await drop_jq_tables(make_url(database_url))


@pytest.fixture
async def store(core_env) -> AsyncIterator[SqlStore]:
    sql = SqlStore(core_env["DATABASE_URL"])
    await sql.ensure_schema()
    try:
        yield sql
    finally:
        await sql.aclose()


@pytest.fixture
def no_llm(core_env, monkeypatch) -> None:
    """The worker environment with no LLM configured at all."""
    monkeypatch.delenv("LLM_API_KEY")
    monkeypatch.delenv("LLM_BASE_URL")
    get_settings.cache_clear()
