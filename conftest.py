"""The Python examples of README.md and docs/*.md run as tests, so that none can drift from the code.

Sybil collects every ```python block of those pages; the blocks of one page run in order, in one
namespace and on one event loop (so top-level ``await`` works, and a page's later blocks see what
its earlier ones made), against the test Redis (``REDIS_URL`` on ``JOBQUEUE_TEST_REDIS_DB``, or an
embedded Valkey, as for ``tests/``) with a SQLite store in a temporary directory. Each page starts
with clean ``jq:*``/``arq:*`` keys and closes the shared pool when it ends.

A block that cannot run here (it needs a running worker, a web app, a live events stream) is
preceded by ``<!-- skip: next -->``; setup a reader need not see goes in an
``<!-- invisible-code-block: python -->`` comment. Both are invisible on GitHub and on the site.
"""

from __future__ import annotations

import ast
import asyncio
import inspect
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from sybil import Example, Sybil
from sybil.evaluators.python import pad
from sybil.parsers.markdown import CodeBlockParser, SkipParser

from tests.support.redis_server import clean_keys, resolve_test_redis_url

# What a page's examples find in the environment; everything else is the reader's own.
DOC_RUNNER = "_docs_runner"


@pytest.fixture(scope="session")
def _docs_redis_url() -> Iterator[str]:
    url, server = resolve_test_redis_url()
    try:
        yield url
    finally:
        if server is not None:
            server.stop()


@pytest.fixture(scope="module")  # a Sybil document is a module: one runner per page
def _docs_runner(_docs_redis_url: str) -> Iterator[asyncio.Runner]:
    from jobqueue import close_queues
    from jobqueue.settings import get_settings

    with tempfile.TemporaryDirectory() as tmp, pytest.MonkeyPatch.context() as env:
        env.setenv("REDIS_URL", _docs_redis_url)
        env.setenv("DATABASE_URL", f"sqlite+aiosqlite:///{Path(tmp) / 'jobqueue.db'}")
        env.chdir(tmp)  # an example that writes a file writes it here
        get_settings.cache_clear()
        client = redis.Redis.from_url(_docs_redis_url)
        clean_keys(client)
        runner = asyncio.Runner()
        try:
            yield runner
        finally:
            try:
                runner.run(close_queues())
            finally:
                runner.close()
                clean_keys(client)
                client.close()
                get_settings.cache_clear()


def _evaluate(example: Example) -> None:
    """Run one block like a module body in which ``await`` is allowed."""
    __tracebackhide__ = True
    source = pad(example.parsed, example.line + example.parsed.line_offset)
    code = compile(source, example.path, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT, dont_inherit=True)
    result = eval(code, example.namespace)
    if inspect.iscoroutine(result):
        example.namespace[DOC_RUNNER].run(result)
    example.namespace.pop("__builtins__", None)


pytest_collect_file = Sybil(
    parsers=[CodeBlockParser(language="python", evaluator=_evaluate), SkipParser()],
    patterns=["README.md", "docs/*.md", "docs/**/*.md"],
    fixtures=[DOC_RUNNER],
).pytest()
