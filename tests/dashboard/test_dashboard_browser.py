"""The dashboard in a real headless browser (Debian's chromium driven by Playwright) against real
Redis and a real arq worker process: live counts, schedules, a failed job's error, retry, pause, escaping,
no Content-Security-Policy violation, 401; a running job's progress, logs and timeline, and cancel,
all shown live from the events stream without a reload.

``JOBQUEUE_DASHBOARD_SCREENSHOT=docs/dashboard.png`` also saves the overview there (the README's).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from collections.abc import AsyncIterator

import httpx
import pytest

import jobqueue
from jobqueue import product_embedding_queue as embeddings
from jobqueue.dashboard import create_app
from tests.support.dashboard import serving
from tests.support.waiting import WorkerProcess
from tests.support.workers import behaviour_key, runs

playwright_api = pytest.importorskip("playwright.async_api")
CHROMIUM = os.environ.get("CHROMIUM") or shutil.which("chromium")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="no chromium on PATH or at CHROMIUM (Debian: apt-get install chromium; .ci/run does)"
)

SETTINGS = "tests.support.workers.EmbeddingTestSettings"
XSS = "<script>window.__pwned=1</script>"
USER, PASSWORD = "ops", "pw"
TIMEOUT_MS = 15_000
# Runs before the page's own script (and, injected by the browser's debugger, is not subject to the
# page's policy): every violation of the Content-Security-Policy is kept in window.__csp.
CSP_WATCH = """
window.__csp = [];
document.addEventListener("securitypolicyviolation", (e) => {
  window.__csp.push(`${e.effectiveDirective} ${e.blockedURI}`);
});
"""


@pytest.fixture
async def dashboard_url() -> AsyncIterator[str]:
    """The dashboard served by uvicorn on a free loopback port, with basic-auth credentials."""
    async with serving(create_app(user=USER, password=PASSWORD, poll_interval_ms=300)) as url:
        yield url


@pytest.fixture
async def browser_page(dashboard_url):
    async with playwright_api.async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        context = await browser.new_context(
            http_credentials={"username": USER, "password": PASSWORD}, viewport={"width": 1440, "height": 900}
        )
        await context.add_init_script(CSP_WATCH)
        page = await context.new_page()
        page.set_default_timeout(TIMEOUT_MS)
        page.on("dialog", lambda dialog: asyncio.ensure_future(dialog.accept()))  # every action is confirmed
        try:
            yield page
        finally:
            await browser.close()


def count_cell(page, queue: str, state: str):
    return page.locator(f'#queues tr[data-queue="{queue}"] td[data-count="{state}"]')


async def test_dashboard_in_chromium(redis_client, dashboard_url, browser_page, tmp_path):
    expect = playwright_api.expect
    page = browser_page
    console: list[str] = []  # chromium also logs each violation ("... Content Security Policy ...")
    page.on("console", lambda message: console.append(message.text))
    await redis_client.set(behaviour_key("broken"), json.dumps({"permanent": True}))
    await jobqueue.enqueue_product_embeddings(["a", "b", "c", "broken", XSS])
    await jobqueue.enqueue_product_enrichment("p1")
    await jobqueue.enqueue_taste_profile_embedding("tp1", "u1")
    await jobqueue.enqueue_curated_collections("home", "2025-12-21", delay=3600)
    reminder = {"title": "Hi", "body": "Soon"}
    await jobqueue.enqueue_reminder_dispatch("s1", "u1", "PUSH", reminder, "2020-01-01T00:00:00Z")
    yearly = {"cron": "0 2 1 1 *", "payload": {"product_id": "p1"}}  # no slot falls due during the test
    await jobqueue.upsert_schedule(f"nightly-{XSS}", "product-embedding", **yearly)

    # Five queues with their counts; they change, without a reload, as a worker runs the jobs.
    await page.goto(dashboard_url + "/")
    await expect(page.locator("#queues tbody tr")).to_have_count(5)
    await expect(count_cell(page, "product-embedding", "waiting")).to_have_text("5")
    await expect(count_cell(page, "curated-collections", "delayed")).to_have_text("1")
    # The schedules, the arq cron job beside them; an id holding <script> is shown as text.
    schedule = page.locator(f'#schedules tr[data-schedule="nightly-{XSS}"]')
    await expect(schedule.locator("td").nth(1)).to_have_text(f"nightly-{XSS}")
    await expect(page.locator('#schedules tr[data-kind="arq-cron"]')).to_contain_text("daily_curated_collections")
    assert await page.locator("#view script").count() == 0
    with WorkerProcess(SETTINGS) as worker:
        await expect(count_cell(page, "product-embedding", "completed")).to_have_text("4")
        await expect(count_cell(page, "product-embedding", "failed")).to_have_text("1")
        await expect(count_cell(page, "product-embedding", "waiting")).to_have_text("0")
        # Done per hour counts each job (never 0.0 for a few jobs); the charts have axes with units.
        done = page.locator('#queues tr[data-queue="product-embedding"] td[data-done]')
        await expect(done).to_have_text("4")
        axis = page.locator("#charts svg.chart").first.locator("text.axis")
        await expect(axis.last).to_have_text("now")
        await expect(axis.nth(2 if await axis.count() > 5 else 1)).to_contain_text("/min")
        await expect(page.locator("#live")).to_have_text("live")
        await page.screenshot(path=tmp_path / "dashboard.png", full_page=True)
        if os.environ.get("JOBQUEUE_DASHBOARD_SCREENSHOT"):
            await page.screenshot(path=os.environ["JOBQUEUE_DASHBOARD_SCREENSHOT"], full_page=True)

        # The queue's workers: the arq process, with its pid.
        await page.click('#queues a[href="#/workers/product-embedding"]')
        await expect(page.locator("#workers tbody tr")).to_have_count(1)
        await expect(page.locator("#workers tbody tr td").nth(2)).to_have_text(str(worker.pid))

        # Pause shows as paused, and the worker starts nothing while it is.
        await page.click('h1 a[href="#/queue/product-embedding"]')
        await expect(page.locator("#queue-state")).to_have_text("running")
        await page.click("#pause")
        await expect(page.locator("#queue-state")).to_have_text("paused")
        assert await embeddings.is_paused()
        await jobqueue.enqueue_product_embedding("held")
        await expect(page.locator('.tabs a[data-state="paused"]')).to_have_text("paused (1)")
        ran = len(await runs(redis_client))
        since = (await embeddings.get_workers())[0]["last_heartbeat"]
        await worker.wait_for(lambda: _ticked_since(since), what="the worker to tick while paused")
        assert len(await runs(redis_client)) == ran
        assert (await embeddings.get_job_counts())["paused"] == 1

    # A failed job's error shows; a click on retry moves it back to waiting.
    await page.click("#pause")  # now reads "Resume"
    await expect(page.locator("#queue-state")).to_have_text("running")
    await page.click('.tabs a[data-state="failed"]')
    row = page.locator('#jobs tr[data-job="product-embedding:broken"]')
    await expect(row.locator("td.error")).to_have_text("PermanentJobError: product broken cannot be embedded")
    await row.locator("a").click()
    await expect(page.locator("#job-error")).to_have_text("PermanentJobError: product broken cannot be embedded")
    await expect(page.locator("#job-traceback")).to_contain_text("Traceback (most recent call last)")
    await page.go_back()
    await row.locator("button.retry").click()
    await expect(row).to_have_count(0)
    assert await embeddings.get_job_state("product-embedding:broken") == "waiting"
    await page.click('.tabs a[data-state="waiting"]')
    await expect(page.locator('#jobs tr[data-job="product-embedding:broken"]')).to_have_count(1)

    # A payload holding <script> is shown as text, never run.
    await page.click('.tabs a[data-state="completed"]')
    await page.locator(f'#jobs tr[data-job="product-embedding:{XSS}"] a').click()
    await expect(page.locator("#job-state")).to_have_text("completed")
    await expect(page.locator("#job-payload")).to_contain_text(f'"product_id": "{XSS}"')
    await expect(page.locator("#job-result")).to_contain_text('"status": "processed"')
    assert await page.evaluate("window.__pwned") is None
    assert await page.locator("#view script").count() == 0

    # Every view was shown under the Content-Security-Policy without breaking it once ...
    assert await page.evaluate("window.__csp") == []
    assert not [text for text in console if "Content Security Policy" in text], console
    # ... and the policy is in force: an inline script is refused, and the watch sees it.
    with pytest.raises(playwright_api.Error):
        await page.add_script_tag(content="window.__inline = 1")
    assert await page.evaluate("window.__inline") is None
    assert await page.evaluate("window.__csp") == ["script-src-elem inline"]
    assert [text for text in console if "Content Security Policy" in text]


STEP = {"step": "grouping", "step_number": 2, "steps": 4, "percent": 50}


async def test_progress_logs_timeline_and_cancel_update_live_in_chromium(redis_client, browser_page):
    """With polling every 10 minutes, whatever changes on the page came through the event stream."""
    expect = playwright_api.expect
    page = browser_page
    console: list[str] = []
    page.on("console", lambda message: console.append(message.text))
    await redis_client.set(behaviour_key("slow"), json.dumps({"block": True, "progress": [STEP], "logs": ["reading"]}))
    async with serving(create_app(user=USER, password=PASSWORD, poll_interval_ms=600_000)) as url:
        await page.goto(url + "/")
        await count_cell(page, "product-embedding", "active").locator("a").click()  # the running jobs
        await expect(page.locator('.tabs a[data-state="active"]')).to_have_class("current")
        await expect(page.locator("#live")).to_have_text("live")
        await page.evaluate("window.__loaded = 1")  # gone if the page were loaded again
        await expect(page.locator("#jobs tbody tr")).to_have_count(0)
        await jobqueue.enqueue_product_embedding("slow")
        await jobqueue.enqueue_product_embedding("queued")  # waits behind it: the worker runs one at a time
        with WorkerProcess(SETTINGS) as worker:
            row = page.locator('#jobs tr[data-job="product-embedding:slow"]')
            await expect(row.locator(".progress-label")).to_have_text("grouping · 2 of 4 · 50%")
            assert await row.locator("progress").get_attribute("value") == "50"

            # A waiting job's row has Cancel too: it ends failed at once.
            await page.click('.tabs a[data-state="waiting"]')
            queued = page.locator('#jobs tr[data-job="product-embedding:queued"]')
            await queued.locator("button.cancel").click()
            await expect(queued).to_have_count(0)
            await expect(page.locator('.tabs a[data-state="failed"]')).to_have_text("failed (1)")

            # The running job's view: progress, its log lines and its timeline so far.
            await page.click('.tabs a[data-state="active"]')
            await row.locator("a").click()
            await expect(page.locator("#job-state")).to_have_text("active")
            await expect(page.locator("dl .progress-label")).to_have_text("grouping · 2 of 4 · 50%")
            await expect(page.locator("#job-logs")).to_have_text("reading (try 1)")
            timeline = page.locator("#job-timeline li")
            await expect(timeline).to_have_count(3)
            assert await _event_names(timeline) == ["added", "active", "progress"]

            # Cancel: the worker process stops the run; the page shows it failed, without a reload.
            await page.click("#job-cancel")
            await expect(page.locator("#job-state")).to_have_text("failed")
            await expect(page.locator("#job-error")).to_have_text("JobCancelled: cancelled from the dashboard")
            names = ["added", "active", "progress", "cancelled", "failed"]
            await expect(timeline).to_have_count(len(names))
            assert await _event_names(timeline) == names
            await expect(page.locator("#job-cancel")).to_have_count(0)
            job = await worker.wait_for(lambda: embeddings.get_job("product-embedding:slow"), what="the job")
            assert (job.state, job.error_type) == ("failed", "JobCancelled")
            assert await page.evaluate("window.__loaded") == 1
        assert await page.evaluate("window.__csp") == []
        assert not [text for text in console if "Content Security Policy" in text], console
        await page.goto("about:blank")  # the page's stream ends: the server need not wait for it


async def _event_names(timeline) -> list[str]:
    return await timeline.evaluate_all("items => items.map(i => i.dataset.event)")


async def _ticked_since(ms: int) -> bool:
    workers = await embeddings.get_workers()
    return bool(workers) and workers[0]["last_heartbeat"] > ms + 100


async def test_without_credentials_page_and_api_answer_401(dashboard_url):
    async with playwright_api.async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = await browser.new_page()
        # Headless chromium cannot ask for credentials: it refuses the 401 challenge outright.
        with pytest.raises(playwright_api.Error, match="ERR_INVALID_AUTH_CREDENTIALS"):
            await page.goto(dashboard_url + "/")
        assert await page.locator("#queues").count() == 0
        for path in ("/", "/api/queues", "/api/queues/product-embedding/jobs"):
            assert (await page.request.get(dashboard_url + path)).status == 401
        await browser.close()
    async with httpx.AsyncClient() as client:
        assert (await client.get(dashboard_url + "/api/queues")).status_code == 401
        assert (await client.get(dashboard_url + "/api/queues", auth=(USER, PASSWORD))).status_code == 200
