"""Scenario 8, access: an ACL user with a password, and ``rediss://`` against a server with a
self-signed CA (``?ssl_ca_certs=``), work end to end with real workers; a wrong password or an
unknown CA gives one clear error; the password never shows in an error, a repr or a log line."""

from __future__ import annotations

import asyncio
import logging
import secrets
import subprocess
import sys
import traceback

import httpx
import pytest

import jobqueue
from jobqueue import RedisUnavailableError
from jobqueue import product_embedding_queue as embeddings
from jobqueue.dashboard import create_app
from jobqueue.settings import get_settings
from tests.faults import figures
from tests.faults.servers import TlsRedis
from tests.faults.workers import StormSettings
from tests.support.waiting import WorkerProcess

SCENARIO = 8
SETTINGS = "tests.faults.workers.StormSettings"
USER = "jobs"
JOBS = 20


def add_acl_user(admin, password: str) -> None:
    """The app's own user; the default (passwordless) user is switched off."""
    admin.acl_setuser(USER, enabled=True, passwords=[f"+{password}"], keys=["*"], channels=["*"], commands=["+@all"])
    admin.acl_setuser("default", enabled=False)


def use(monkeypatch, url: str) -> None:
    monkeypatch.setenv("REDIS_URL", url)
    get_settings.cache_clear()


async def run_jobs_through_a_worker(tag: str) -> tuple[int, str]:
    handles = [await jobqueue.enqueue_product_embedding(f"{tag}-{i}") for i in range(JOBS)]
    with WorkerProcess(SETTINGS) as worker:
        await worker.wait_for(lambda: _completed_at_least(JOBS), timeout=30, what=f"the {tag} jobs")
        log = worker.output()
    done = sum([await h.status() == "completed" for h in handles])
    await jobqueue.close_queues()
    return done, log


DASHBOARD_TOKEN = "faults-token"
DASHBOARD_PAGES = (
    "/",
    "/metrics",
    "/api/queues",
    "/api/queues/product-embedding",
    "/api/queues/product-embedding/jobs?state=completed",
    "/api/queues/product-embedding/workers",
    "/api/jobs/product-embedding:acl-0",
)


async def dashboard_pages() -> str:
    """Every page of the dashboard, as the operator's browser would get them."""
    transport = httpx.ASGITransport(app=create_app(token=DASHBOARD_TOKEN))
    headers = {"Authorization": f"Bearer {DASHBOARD_TOKEN}"}
    async with httpx.AsyncClient(transport=transport, base_url="http://dash.test", headers=headers) as client:
        pages = [await client.get(path) for path in DASHBOARD_PAGES]
    await jobqueue.close_queues()
    return "\n".join(f"{r.status_code} {r.request.url.path}\n{r.text}" for r in pages)


def cli(*args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "jobqueue.cli", *args], capture_output=True, text=True, timeout=60)
    return f"exit {done.returncode}\n{done.stdout}\n{done.stderr}"


def error_texts(exc: BaseException) -> str:
    """Everything an operator could see of an error: message, repr, chained causes, traceback."""
    return "\n".join([str(exc), repr(exc), *traceback.format_exception(exc)])


async def refusal(caplog) -> tuple[RedisUnavailableError, str]:
    with caplog.at_level(logging.DEBUG), pytest.raises(RedisUnavailableError) as info:
        await jobqueue.enqueue_product_embedding("refused")
    healthy = await jobqueue.check_queues_health()
    await jobqueue.close_queues()
    assert not healthy
    return info.value, error_texts(info.value) + caplog.text


async def test_an_acl_user_with_a_password_works_and_the_password_never_shows(own_valkey, monkeypatch, caplog):
    password = "pw-" + secrets.token_hex(12)
    server = own_valkey()
    add_acl_user(server.admin(), password)
    use(monkeypatch, server.url(user=USER, password=password))
    with caplog.at_level(logging.DEBUG):
        done, log = await run_jobs_through_a_worker("acl")
        pages = await dashboard_pages()
    stats = await asyncio.to_thread(cli, "stats")
    shown = log + caplog.text + repr(StormSettings.redis_settings) + repr(get_settings()) + pages + stats

    use(monkeypatch, server.url(user=USER, password="wrong-" + password))
    wrong, wrong_text = await refusal(caplog)
    wrong_pages = await dashboard_pages()
    wrong_stats = await asyncio.to_thread(cli, "stats")
    wrong_text += wrong_pages + wrong_stats
    with WorkerProcess(SETTINGS, JOBQUEUE_REDIS_STARTUP_WAIT="2") as refused_worker:
        await refused_worker.wait_for(
            lambda: _true(refused_worker.proc.poll() is not None), timeout=30, what="the worker to give up"
        )
        refused_exit = refused_worker.proc.returncode
        refused_output = refused_worker.output()
    wrong_text += refused_output
    figures.report(SCENARIO, jobs=JOBS, lost=JOBS - done, acl_jobs_completed=done)
    assert done == JOBS
    assert pages.count("200 /") == len(DASHBOARD_PAGES), pages[:2000]
    assert "exit 0" in stats and "product-embedding" in stats
    assert "invalid username-password pair" in str(wrong) and f"redis://{USER}:***@" in str(wrong)
    assert wrong_pages.count("503 /api/") >= 1 and "exit 0" not in wrong_stats
    assert refused_exit != 0 and "invalid username-password pair" in refused_output, refused_output[-2000:]
    assert password not in shown and password not in wrong_text


async def test_rediss_with_a_self_signed_ca_works_end_to_end(tmp_path, monkeypatch, caplog):
    password = "pw-" + secrets.token_hex(12)
    server = TlsRedis(tmp_path).start()
    try:
        add_acl_user(server.admin(), password)
        use(monkeypatch, server.url(user=USER, password=password))
        with caplog.at_level(logging.DEBUG):
            done, log = await run_jobs_through_a_worker("tls")
        # Without the CA the server's certificate is not trusted: a clear refusal, no plain text.
        use(monkeypatch, server.url(user=USER, password=password).split("?")[0])
        untrusted, untrusted_text = await refusal(caplog)
    finally:
        server.stop()
    figures.report(SCENARIO, jobs=JOBS, lost=JOBS - done, tls_jobs_completed=done)
    assert done == JOBS
    assert "certificate verify failed" in str(untrusted)
    assert password not in log + caplog.text + untrusted_text


async def _completed_at_least(n):
    return (await embeddings.get_job_counts())["completed"] >= n


async def _true(value):
    return value
