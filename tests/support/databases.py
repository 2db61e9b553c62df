"""The SQL databases the tests run against: a SQLite file, and PostgreSQL when pointed at one.

PostgreSQL is used only when ``JOBQUEUE_TEST_DATABASE_URL`` names it (e.g.
``postgresql+asyncpg://postgres@127.0.0.1:5432/jobqueue_test_store``; the database is created if
missing): a server that merely happens to listen on this machine is never touched. Without it the
PostgreSQL variants are skipped, with that reason in the run's summary. Only ``jq_*`` tables in that
database are dropped.
"""

from __future__ import annotations

import asyncio
import os

import asyncpg
import pytest
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

PG_URL_VARIABLE = "JOBQUEUE_TEST_DATABASE_URL"
EXAMPLE_PG_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/jobqueue_test_store"


def configured_pg_url() -> str | None:
    """The PostgreSQL the tests were pointed at, or None (its variants are then skipped)."""
    return os.environ.get(PG_URL_VARIABLE) or None


def describe_pg() -> str:
    """The report header's line: which PostgreSQL this run uses, password hidden."""
    raw = configured_pg_url()
    if raw is None:
        return f"none (set {PG_URL_VARIABLE}, e.g. {EXAMPLE_PG_URL}, to run the PostgreSQL variants)"
    try:
        return f"{make_url(raw).render_as_string(hide_password=True)} (from {PG_URL_VARIABLE})"
    except ArgumentError:
        return f"{PG_URL_VARIABLE} is not a database URL"


def _asyncpg_dsn(url: URL) -> str:
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


async def _create_database(url: URL) -> None:
    admin = await asyncpg.connect(_asyncpg_dsn(url.set(database="postgres")), timeout=3)
    try:
        if not await admin.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", url.database):
            try:
                await admin.execute(f'CREATE DATABASE "{url.database}"')
            except asyncpg.DuplicateDatabaseError:
                pass  # another test session created it meanwhile
    finally:
        await admin.close()


async def drop_jq_tables(url: URL) -> None:
    """Drop our own tables, only in the test database: nothing else on that server is touched."""
    conn = await asyncpg.connect(_asyncpg_dsn(url), timeout=3)
    try:
        rows = await conn.fetch(
            "SELECT tablename FROM pg_tables WHERE schemaname = current_schema() AND tablename LIKE 'jq\\_%'"
        )
        for row in rows:
            await conn.execute(f'DROP TABLE IF EXISTS "{row["tablename"]}"')
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def pg_url() -> str:
    raw = configured_pg_url()
    if raw is None:
        pytest.skip(f"no PostgreSQL: set {PG_URL_VARIABLE} (e.g. {EXAMPLE_PG_URL}) to run this variant")
    url = make_url(raw)
    try:
        asyncio.run(_create_database(url))
    except (OSError, asyncpg.PostgresError) as exc:
        where = url.render_as_string(hide_password=True)
        pytest.skip(f"PostgreSQL does not answer at {where} ({exc!r}); set {PG_URL_VARIABLE}")
    return raw


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'store.db'}"
    return request.getfixturevalue("pg_url")
