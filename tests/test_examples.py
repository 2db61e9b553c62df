"""The examples run: the FastAPI app enqueues through the shared pool and its lifespan closes it; the
webhook receiver takes signed reminders once and refuses replays."""

import asyncio
import hashlib
import hmac
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

import jobqueue
from examples import webhook_receiver
from examples.fastapi_app import app
from jobqueue import PermanentJobError
from jobqueue.backend import connection
from tests.support.waiting import ROOT, free_port, wait_for
from workers.providers.notifier import Notification, WebhookNotifier


async def test_fastapi_example_enqueues_and_reports_jobs():
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
            first = await client.post("/products/product-123/processing")
            assert first.status_code == 202
            assert first.json()["embedding_job"] == {"id": "product-embedding:product-123", "created": True}
            again = (await client.post("/products/product-123/processing")).json()
            assert again["enrichment_job"]["created"] is False
            job = (await client.get("/jobs/product-enrichment/product-enrichment:product-123")).json()
            assert job["state"] == "waiting" and job["priority"] == 3
            assert (await client.post("/products/bad id/processing")).status_code == 422
            assert (await client.get("/jobs/emails/x")).status_code == 404
            assert (await client.get("/health")).json() == {"redis": True}
            assert connection._clients
    assert not connection._clients  # the lifespan closed the pools


async def test_fastapi_example_answers_404_with_json_for_an_unknown_or_foreign_job_id():
    await jobqueue.enqueue_product_embedding("demo-p02")
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
            answers = {
                path: await client.get(path)
                for path in (
                    "/jobs/product-embedding/demo-p02",  # the id without its queue's prefix
                    "/jobs/product-embedding/product-embedding:nobody",  # no such job
                    "/jobs/product-enrichment/product-embedding:demo-p02",  # another queue's job
                    "/jobs/emails/emails:x",  # no such queue
                )
            }
            found = await client.get("/jobs/product-embedding/product-embedding:demo-p02")
    assert {path: r.status_code for path, r in answers.items()} == dict.fromkeys(answers, 404)
    assert all(r.headers["content-type"] == "application/json" for r in answers.values())
    assert "product-embedding:" in answers["/jobs/product-embedding/demo-p02"].json()["detail"]
    assert found.status_code == 200 and found.json()["state"] == "waiting"


async def test_readme_command_serves_the_example_with_uvicorn(redis_url, redis_client, tmp_path):
    port = free_port()
    command = [str(Path(sys.executable).parent / "uvicorn"), "examples.fastapi_app:app", "--port", str(port)]
    env = {**os.environ, "REDIS_URL": redis_url, "PYTHONPATH": str(ROOT)}
    with tempfile.TemporaryFile() as log:
        server = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:

                async def serving():
                    try:
                        return (await client.get("/health")).json()
                    except httpx.TransportError:
                        assert server.poll() is None, "uvicorn exited"
                        return None

                assert await wait_for(serving, timeout=30, what="uvicorn to serve /health") == {"redis": True}
                first = await client.post("/products/product-9/reindex")
                assert (first.status_code, first.json()) == (
                    202,
                    {"job_id": "product-embedding:product-9", "created": True},
                )
                again = await client.post("/products/product-9/reindex")
                assert again.json()["created"] is False
                assert (await client.post("/products/bad id/reindex")).status_code == 422
                job = (await client.get("/jobs/product-embedding/product-embedding:product-9")).json()
                assert job["state"] == "waiting" and job["payload"]["triggered_by"] == "api.reindex"
                assert (await client.get("/admin/queues/")).status_code == 200  # loopback, no credentials
        finally:
            server.terminate()
            await asyncio.to_thread(server.wait, 20)
            log.seek(0)
            output = log.read().decode()
    assert "Traceback" not in output, output


async def test_webhook_receiver_example_delivers_once_and_refuses_stale_or_forged_requests(monkeypatch):
    secret, url = "whsec-example", "http://receiver/reminders/push"
    monkeypatch.setenv("REMINDER_WEBHOOK_SECRET", secret)
    monkeypatch.setattr(webhook_receiver, "delivered", {})
    notification = Notification(
        schedule_id="s1", user_id="u1", channel="PUSH", title="Birthday", body="Tomorrow",
        scheduled_for=datetime(2025, 12, 21, 9, 0, tzinfo=UTC),
    )  # fmt: skip
    transport = httpx.ASGITransport(app=webhook_receiver.app)
    async with httpx.AsyncClient(transport=transport) as client:
        notifier = WebhookNotifier({"PUSH": url}, secret, client=client)
        first, retry = await notifier.send(notification), await notifier.send(notification)
        assert first.message_id == retry.message_id == "push:s1"
        assert list(webhook_receiver.delivered) == ["s1"]
        body = webhook_receiver.delivered["s1"]

        def signed(timestamp: int, key: str = secret) -> str:
            return "sha256=" + hmac.new(key.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()

        async def post(timestamp: int, signature: str) -> int:
            headers = {
                "X-Jobqueue-Timestamp": str(timestamp),
                "X-Jobqueue-Signature": signature,
                "Idempotency-Key": "s2",
            }
            return (await client.post(url, content=body, headers=headers)).status_code

        sent_long_ago = int(time.time()) - 301
        assert await post(sent_long_ago, signed(sent_long_ago)) == 401  # a captured request replayed
        now = int(time.time())
        assert await post(now + 1, signed(now)) == 401  # its timestamp moved forward
        assert await post(now, signed(now, "not-the-secret")) == 401
        assert list(webhook_receiver.delivered) == ["s1"]
        with pytest.raises(PermanentJobError, match="401"):
            await WebhookNotifier({"PUSH": url}, "not-the-secret", client=client).send(notification)
