"""The fault suite's figures (one line per scenario, then the summary line) and its servers.

Each test module names its scenario in ``SCENARIO``; a scenario passes when every test of it
passed. The lines are printed in pytest's terminal summary, so ``-q`` shows them too.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import asyncpg
import pytest
from sqlalchemy.engine import make_url

from jobqueue.settings import get_settings
from tests.faults import figures
from tests.faults.servers import OwnValkey
from tests.support.databases import _create_database, configured_pg_url


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:
    report = yield
    number = getattr(getattr(item, "module", None), "SCENARIO", None)
    if number is not None and (report.when == "call" or report.failed):
        s = figures.scenario(number)
        if report.when == "call":
            s.tests += 1
        # A known defect that showed (an xfail) is a scenario that does not pass yet; an
        # intermittent one that did not show this time (a non-strict xpass) passed its checks.
        if report.failed:
            s.failed += 1
        elif report.skipped and hasattr(report, "wasxfail"):
            s.known_defects += 1
    return report


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    if not figures.RESULTS:
        return
    terminalreporter.section(f"fault suite figures (FAULTS_SCALE={figures.scale()})")
    for line in figures.summary():
        terminalreporter.write_line(line)


@pytest.fixture
def own_valkey(monkeypatch, tmp_path):
    """Start a Valkey of the test's own (``own_valkey(**config)``) and point ``REDIS_URL`` at it.

    Its memory, keys and lifetime are the test's alone: it can be stopped, restarted, made a
    replica or starved of memory without touching anyone else's Redis.
    """
    servers: list[OwnValkey] = []

    def start(*, user: str | None = None, password: str | None = None, **config: object) -> OwnValkey:
        server = OwnValkey(tmp_path / f"valkey-{len(servers)}", **config).start()
        servers.append(server)
        monkeypatch.setenv("REDIS_URL", server.url(user=user, password=password))
        get_settings.cache_clear()
        return server

    yield start
    for server in servers:
        server.stop()
    get_settings.cache_clear()


@pytest.fixture
def database_url(tmp_path) -> str:
    """One store per fault test: the PostgreSQL at ``JOBQUEUE_TEST_DATABASE_URL`` when set and
    answering (the concurrent case that matters), else a SQLite file. (The job tests run both; the
    fault suite needs only one.)"""
    raw = configured_pg_url()
    if raw is None:
        return f"sqlite+aiosqlite:///{tmp_path / 'store.db'}"
    try:
        asyncio.run(_create_database(make_url(raw)))
    except (OSError, asyncpg.PostgresError):
        return f"sqlite+aiosqlite:///{tmp_path / 'store.db'}"
    return raw
